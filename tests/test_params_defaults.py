"""``params.yaml`` and the code's defaults are one source: they cannot drift apart.

The service falls back to ``Params()`` when it runs without a params file, tests build from
``Params()``, and users read ``params.yaml``: a default changed in one place only would make each of
them run something different.
"""

from __future__ import annotations

from typing import Any

from signflow.config import Params, load_params
from tests.conftest import REPO_ROOT


def _differences(code: Any, yaml_value: Any, key: str = "") -> list[str]:
    if isinstance(code, dict) and isinstance(yaml_value, dict):
        return [
            line
            for name in sorted(set(code) | set(yaml_value))
            for line in _differences(code.get(name, "<absent>"), yaml_value.get(name, "<absent>"), f"{key}.{name}")
        ]
    return [] if code == yaml_value else [f"{key.lstrip('.')}: code {code!r}, params.yaml {yaml_value!r}"]


def test_code_defaults_equal_params_yaml() -> None:
    code = Params().model_dump(mode="json")
    documented = load_params(REPO_ROOT / "params.yaml").model_dump(mode="json")
    differences = _differences(code, documented)
    assert not differences, "change the default in signflow/config.py and params.yaml together:\n" + "\n".join(
        differences
    )


def test_a_drifted_default_is_named() -> None:
    """The check itself: one leaf changed in params.yaml only is reported by its key."""
    documented = load_params(REPO_ROOT / "params.yaml").model_dump(mode="json")
    documented["train"]["epochs"] += 1
    code = Params().model_dump(mode="json")
    assert _differences(code, documented) == [
        f"train.epochs: code {code['train']['epochs']}, params.yaml {code['train']['epochs'] + 1}"
    ]
