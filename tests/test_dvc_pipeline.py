"""DVC caching of the data stages, with real ``git`` + ``dvc repro`` in a temporary repository.

- a second ``dvc repro`` with nothing changed runs nothing;
- changing ``extract.seq_len`` re-runs extract only (not download/split/crop);
- changing ``train.*`` / ``model.*`` never invalidates the data stages.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

DATA_STAGES = ("download", "split", "crop", "extract")
TINY = {
    "data": {"source": "synthetic", "synthetic": {"num_glosses": 3, "signers": 4, "repetitions": 1, "frames": 10,
                                                    "lead_frames": 1, "width": 48, "height": 32}},
    "split": {"strategy": "signer"},
    "extract": {"seq_len": 4, "stored_frames": 6, "frame_size": 16, "num_workers": 1},
}


def _merge(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        base[key] = _merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return base


def _run(cmd: list[str], cwd: Path) -> str:
    env = dict(os.environ)
    # dvc runs each stage's `python -m stages.x` through the shell: it must find this venv's python.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(DO_NOT_TRACK="1", DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def _ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([\w-]+)'", output))


def _set_param(repo: Path, section: str, key: str, value: object) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params.setdefault(section, {})[key] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    dvc = Path(sys.executable).parent / "dvc"
    if not dvc.exists():
        pytest.skip("dvc is not installed in this environment")
    root = tmp_path_factory.mktemp("dvc-repo")
    for name in ("signflow", "stages"):
        shutil.copytree(REPO_ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "dvc.yaml", root / "dvc.yaml")
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    (root / "params.yaml").write_text(yaml.safe_dump(_merge(params, TINY), sort_keys=False))
    _run(["git", "init", "-q"], root)
    _run([str(dvc), "init", "-q"], root)
    _run([str(dvc), "config", "core.analytics", "false"], root)
    return root


def test_data_stages_cache(repo: Path) -> None:
    dvc = str(Path(sys.executable).parent / "dvc")

    first = _run([dvc, "repro", "extract"], repo)
    assert _ran(first) == set(DATA_STAGES)
    assert (repo / "data" / "features" / "train" / "index.json").is_file()

    second = _run([dvc, "repro", "extract"], repo)
    assert _ran(second) == set(), second

    _set_param(repo, "extract", "seq_len", 5)
    third = _run([dvc, "repro", "extract"], repo)
    assert _ran(third) == {"extract"}, third

    _set_param(repo, "train", "epochs", 1)
    _set_param(repo, "train", "lr", 0.5)
    _set_param(repo, "model", "dropout", 0.1)
    status = _run([dvc, "status", *DATA_STAGES], repo)
    assert "up to date" in status, status
    fourth = _run([dvc, "repro", "extract"], repo)
    assert _ran(fourth) == set(), fourth
