"""Evaluation metrics against hand-computed values, and the report files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from signflow import drift
from signflow.evaluation import SplitPredictions, compute_metrics, flat_metrics, topk_hits, write_reports

CLASSES = ["book", "drink", "go", "help"]
# Five clips. Rows: true label, then logits chosen so the rank of the true class is known.
LABELS = np.array([0, 0, 1, 2, 3])
LOGITS = np.array(
    [
        [4.0, 1.0, 0.0, 0.0],  # book  -> book (rank 1)
        [3.0, 5.0, 1.0, 0.0],  # book  -> drink (rank 2)
        [0.0, 2.0, 1.0, 0.0],  # drink -> drink (rank 1)
        [3.0, 2.0, 1.0, 0.0],  # go    -> book (rank 3)
        [0.0, 0.0, 1.0, 6.0],  # help  -> help (rank 1)
    ]
)


def test_metrics_match_hand_computed_values() -> None:
    m = compute_metrics(LOGITS, LABELS, CLASSES, top_k=(1, 2, 3, 10))
    assert m["samples"] == 5
    assert m["top1"] == pytest.approx(3 / 5)
    assert m["top2"] == pytest.approx(4 / 5)
    assert m["top3"] == pytest.approx(1.0)
    assert m["top10"] == pytest.approx(1.0)  # k capped at the class count
    # per class top-1: book 1/2, drink 1, go 0, help 1
    assert m["per_class_top1"] == pytest.approx((0.5 + 1 + 0 + 1) / 4)
    assert m["per_class_top2"] == pytest.approx((1 + 1 + 0 + 1) / 4)
    # predictions [book, drink, drink, book, help]: precision book 1/2, drink 1/2, go 0 (never predicted), help 1
    assert m["macro_precision"] == pytest.approx((0.5 + 0.5 + 0 + 1) / 4)
    assert m["macro_recall"] == pytest.approx((0.5 + 1 + 0 + 1) / 4)
    assert m["macro_f1"] == pytest.approx((0.5 + 2 * 0.5 * 1 / 1.5 + 0 + 1) / 4)
    expected_loss = torch.nn.functional.cross_entropy(torch.tensor(LOGITS), torch.tensor(LABELS)).item()
    assert m["loss"] == pytest.approx(expected_loss)
    np.testing.assert_array_equal(
        m["confusion_matrix"], [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]]
    )
    go = m["per_class_report"][2]
    assert go == {"label": 2, "gloss": "go", "support": 1, "precision": 0.0, "recall": 0.0, "f1": 0.0,
                  "top2": 0.0, "top3": 1.0, "top10": 1.0}  # fmt: skip


def test_macro_averages_skip_classes_absent_from_the_split() -> None:
    """A gloss without test clips has no recall; it must not drag the macro averages to zero."""
    with_absent = np.hstack([LOGITS, np.full((5, 1), -9.0)])
    m = compute_metrics(with_absent, LABELS, [*CLASSES, "absent"], top_k=(1,))
    reference = compute_metrics(LOGITS, LABELS, CLASSES, top_k=(1,))
    for key in ("per_class_top1", "macro_precision", "macro_recall", "macro_f1"):
        assert m[key] == pytest.approx(reference[key])
    assert m["per_class_report"][4]["support"] == 0


def test_topk_ties_count_in_favour_of_the_true_label() -> None:
    logits = np.array([[1.0, 1.0, 1.0]])
    assert topk_hits(logits, np.array([2]), 1).tolist() == [True]


@pytest.mark.parametrize(
    "logits,labels,message",
    [
        (np.zeros((5, 3)), LABELS, r"logits must be \(N, 4\)"),
        (LOGITS, LABELS[:4], r"labels must be \(5,\)"),
        (LOGITS, np.array([0, 0, 1, 2, 4]), r"labels must be integers in \[0, 4\)"),
        (np.where(LOGITS > 5, np.nan, LOGITS), LABELS, "NaN or infinity"),
        (np.zeros((0, 4)), np.zeros(0, dtype=int), "no samples"),
    ],
)
def test_bad_inputs_are_refused(logits: np.ndarray, labels: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compute_metrics(logits, labels, CLASSES)


def test_flat_metrics_keys() -> None:
    metrics = compute_metrics(LOGITS, LABELS, CLASSES)
    flat = flat_metrics({"test": metrics, "val": metrics})
    assert {"test_top1", "test_top5", "test_top10", "test_per_class_top1", "test_macro_f1", "val_top1"} <= set(flat)
    assert all(isinstance(v, (int, float)) for v in flat.values())


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_write_reports_files(tmp_path: Path) -> None:
    test = SplitPredictions("test", [f"t{i}" for i in range(5)], LABELS, LOGITS)
    val = SplitPredictions("val", ["v0", "v1"], np.array([1, 3]), LOGITS[[2, 4]])
    flat = write_reports(tmp_path / "out", {"test": test, "val": val}, CLASSES, top_k=(1, 5))
    out = tmp_path / "out"

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == flat
    assert metrics["test_top1"] == pytest.approx(0.6) and metrics["val_top1"] == 1.0 and metrics["val_samples"] == 2

    confusion = read_csv(out / "confusion.csv")  # the primary (test) split, one row per clip
    assert [(r["actual"], r["predicted"]) for r in confusion] == [
        ("book", "book"), ("book", "drink"), ("drink", "drink"), ("go", "book"), ("help", "help")
    ]  # fmt: skip

    predictions = read_csv(out / "predictions.csv")
    assert len(predictions) == 7
    second = predictions[1]
    assert (second["split"], second["video_id"], second["label"], second["predicted"], second["correct"]) == (
        "test", "t1", "book", "drink", "0"
    )  # fmt: skip
    assert second["top5"] == "drink book go help"
    probabilities = np.exp(LOGITS[1]) / np.exp(LOGITS[1]).sum()
    assert float(second["confidence"]) == pytest.approx(probabilities[1], abs=1e-6)
    test_correct = [int(r["correct"]) for r in predictions if r["split"] == "test"]
    assert np.mean(test_correct) == pytest.approx(metrics["test_top1"])

    per_class = read_csv(out / "per_class.csv")
    assert len(per_class) == 2 * len(CLASSES)
    assert per_class[0] == {"split": "test", "label": "0", "gloss": "book", "support": "2", "precision": "0.5",
                            "recall": "0.5", "f1": "0.5", "top5": "1.0"}  # fmt: skip
    val_go = next(r for r in per_class if r["split"] == "val" and r["gloss"] == "go")
    assert val_go["support"] == "0" and val_go["top5"] == ""

    reference = json.loads((out / "prediction_reference.json").read_text())
    probabilities = np.exp(LOGITS) / np.exp(LOGITS).sum(axis=1, keepdims=True)
    assert reference == drift.build_reference(probabilities.argmax(1), probabilities.max(1), len(CLASSES))

    png = (out / "confusion.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert not list(out.glob(".tmp-*"))


def test_write_reports_many_classes_and_primary_choice(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    names = [f"g{i}" for i in range(60)]
    labels = rng.integers(0, 60, 120)
    result = SplitPredictions("val", [str(i) for i in range(120)], labels, rng.normal(size=(120, 60)))
    write_reports(tmp_path, {"val": result}, names)
    assert len(read_csv(tmp_path / "confusion.csv")) == 120
    import matplotlib.image

    assert matplotlib.image.imread(tmp_path / "confusion.png").shape[0] >= 500
    with pytest.raises(ValueError, match="primary split 'test' was not evaluated"):
        write_reports(tmp_path, {"val": result}, names, primary="test")
