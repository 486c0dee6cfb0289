"""Fail the image build when the installed torch is not the build the TORCH_VARIANT asked for.

    python torch_variant.py cpu      # torch.version.cuda is None, no nvidia-* wheels installed
    python torch_variant.py cu130    # torch.version.cuda == "13.0"

Why: pip is content with any ``torch==2.14.1`` for ``requirements.txt``'s pin, and on Linux x86_64
PyPI's ``torch==2.14.1`` *is* a CUDA build (with ~3 GB of nvidia-* wheels). A mirror that proxies
PyPI instead of the PyTorch index, or a later requirement that pulls torch again, silently turns
the "CPU" image into a 9 GB CUDA one. Checked at build time, the mistake is one red line instead of
an image nobody measured. Standard library only: it runs in the dependency layer, before the code.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys

# The CUDA runtime wheels torch depends on (nvidia-cublas, nvidia-cudnn-cu13, nvidia-nccl-cu13, ...);
# not nvidia-ml-py, the NVML bindings BentoML needs on every variant.
CUDA_WHEEL = re.compile(r"nvidia-(cu|nccl|nvjitlink|nvshmem|nvtx)")


def expected_cuda(variant: str) -> str | None:
    """``cpu`` -> None, ``cu130`` -> ``"13.0"``, ``cu126`` -> ``"12.6"``; anything else is an error."""
    if variant == "cpu":
        return None
    match = re.fullmatch(r"cu(\d+)(\d)", variant)
    if match is None:
        raise ValueError(f"TORCH_VARIANT={variant!r}: expected 'cpu' or 'cu<major><minor>' (cu126, cu128, cu130)")
    return f"{int(match.group(1))}.{match.group(2)}"


def problems(variant: str, torch_version: str, torch_cuda: str | None, distributions: list[str]) -> list[str]:
    """What disagrees with ``variant``, one readable line each (empty: the build is right)."""
    want = expected_cuda(variant)
    found = f"torch {torch_version} (torch.version.cuda={torch_cuda})"
    nvidia = sorted(name for name in distributions if CUDA_WHEEL.match(name.lower()))
    if want is None:
        issues = [f"TORCH_VARIANT=cpu but {found} is a CUDA build"] if torch_cuda else []
        if nvidia:
            issues.append(f"TORCH_VARIANT=cpu but CUDA wheels are installed: {', '.join(nvidia)}")
        return issues
    if torch_cuda != want:
        return [f"TORCH_VARIANT={variant} wants CUDA {want} but found {found}"]
    return []


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    import torch  # the installed one: that is the point

    names = [dist.metadata["Name"] or "" for dist in importlib.metadata.distributions()]
    found = problems(argv[0], torch.__version__, torch.version.cuda, names)
    for line in found:
        print(f"torch_variant: {line}", file=sys.stderr)
    if found:
        print("torch_variant: point TORCH_INDEX_URL at the PyTorch index of that variant "
              "(https://download.pytorch.org/whl/<variant>) or a mirror of it", file=sys.stderr)
        return 1
    print(f"torch_variant: {argv[0]}: torch {torch.__version__}, CUDA {torch.version.cuda}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
