"""Real footage through the whole chain: the 199 WLASL clips of ../shared/data/wlasl-clips through
download (local, WLASL layout) -> split (official) -> crop -> extract -> train (1 epoch) -> evaluate,
by the same script as ``make smoke-wlasl``. About one clip per gloss: no accuracy is asserted or reported.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_every_stage_runs_on_real_wlasl_clips(shared_data: Path, tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    import smoke_wlasl_clips

    assert smoke_wlasl_clips.main(["--clips", str(shared_data / "wlasl-clips"), "--work", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "smoke.json").read_text())
    assert summary["clips"] == 199
    # Real codecs and sizes (288x192 up to 1920x1080): every clip decodes, crops and is stored.
    assert summary["extract"]["extracted"] == 199 and summary["extract"]["skipped"] == 0
    assert sum(summary["extract"]["per_split"].values()) == 199
    assert summary["evaluated"]["test_samples"] > 0 and summary["evaluated"]["val_samples"] > 0
    model = tmp_path / "models" / "model.pt"
    preprocess = json.loads((tmp_path / "models" / "preprocess.json").read_text())
    assert model.stat().st_size > 0 and preprocess["use_bbox"] is True
