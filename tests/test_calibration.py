"""Abstain threshold (fitted on val), coverage, and per-signer accuracy."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from signflow import calibration, evaluation


def _logits(confidences: list[float], predicted: list[int], num_classes: int = 4) -> np.ndarray:
    """Logits whose softmax top-1 is ``predicted`` with exactly the given probability."""
    rows = []
    for confidence, cls in zip(confidences, predicted):
        rest = (1.0 - confidence) / (num_classes - 1)
        probabilities = np.full(num_classes, rest)
        probabilities[cls] = confidence
        rows.append(np.log(probabilities))
    return np.array(rows)


def test_threshold_is_the_lowest_confidence_meeting_the_precision() -> None:
    # Sorted by confidence: 10 right answers (0.95..0.5), then wrong ones at 0.45 and 0.4, then right at 0.35.
    confidences = [0.95 - 0.05 * i for i in range(10)] + [0.45, 0.4, 0.35]
    labels = np.zeros(13, dtype=int)
    predicted = [0] * 10 + [1, 1, 0]
    logits = _logits(confidences, predicted)
    assert calibration.abstain_threshold(logits, labels, 1.0) == pytest.approx(0.5)
    # 10/11 = 0.909 at 0.45 meets 0.9; 10/12 at 0.4 and 11/13 at 0.35 do not.
    assert calibration.abstain_threshold(logits, labels, 0.9) == pytest.approx(0.45)
    assert calibration.abstain_threshold(logits, labels, 0.8) == 0.0  # 11/13 = 0.846: accept everything
    kept = calibration.coverage(logits, labels, 0.49)
    assert kept == {"coverage": pytest.approx(10 / 13), "accepted_top1": 1.0, "accepted": 10}


def test_no_threshold_reaches_the_target_means_abstain() -> None:
    logits = _logits([0.9] * 20, [1] * 20)
    assert calibration.abstain_threshold(logits, np.zeros(20, dtype=int), 0.5) == 1.0
    assert calibration.coverage(logits, np.zeros(20, dtype=int), 1.0)["coverage"] == 0.0


def test_too_few_accepted_clips_are_not_trusted() -> None:
    # Only the top 3 are right: their precision is 1.0, but 3 < min_accepted.
    logits = _logits([0.9, 0.85, 0.8] + [0.5] * 20, [0, 0, 0] + [1] * 20)
    assert calibration.abstain_threshold(logits, np.zeros(23, dtype=int), 0.95, min_accepted=10) == 1.0
    assert calibration.abstain_threshold(logits, np.zeros(23, dtype=int), 0.95, min_accepted=3) == pytest.approx(0.8)


def test_per_signer_and_unseen_signers() -> None:
    logits = _logits([0.9] * 4, [0, 1, 0, 0])
    rows, summary = calibration.per_signer(
        ["a", "b", "c", "d"], logits, np.zeros(4, dtype=int), {"a": "7", "b": "7", "c": "9", "d": ""}, {"7"}
    )
    assert rows == [
        {"signer": "7", "clips": 2, "top1": 0.5, "seen_in_train": True},
        {"signer": "9", "clips": 1, "top1": 1.0, "seen_in_train": False},
    ]
    assert summary["per_signer_top1_mean"] == pytest.approx(0.75)
    assert (summary["unseen_signer_clips"], summary["unseen_signer_top1"]) == (1.0, 1.0)


def test_evaluate_reports_threshold_from_val_only(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video_id", "gloss", "label", "signer", "split"])
        writer.writerows([["v1", "a", 0, 1, "val"], ["t1", "a", 0, 2, "test"], ["x", "a", 0, 1, "train"]])
    val = evaluation.SplitPredictions("val", ["v1"] * 12, np.zeros(12, dtype=int), _logits([0.8] * 12, [0] * 12))
    # Test is all wrong: had the threshold been fitted on test it would be 1.0.
    test = evaluation.SplitPredictions("test", ["t1"] * 3, np.zeros(3, dtype=int), _logits([0.9] * 3, [1] * 3))
    metrics = evaluation.honesty_metrics(
        {"test": test, "val": val}, tmp_path, abstain_precision=0.9, manifest=manifest
    )
    assert metrics["abstain_threshold"] == 0.0
    assert (metrics["test_coverage"], metrics["test_accepted_top1"]) == (1.0, 0.0)
    assert metrics["test_unseen_signer_top1"] == 0.0 and "val_unseen_signer_top1" not in metrics
    assert (tmp_path / "per_signer.csv").read_text().splitlines()[0] == "split,signer,clips,top1,seen_in_train"
    with pytest.raises(FileNotFoundError, match="split manifest not found"):
        evaluation.honesty_metrics({"val": val}, tmp_path, abstain_precision=None, manifest=tmp_path / "nope.csv")
