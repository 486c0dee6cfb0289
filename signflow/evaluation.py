"""Evaluation metrics and reports: one flat metrics dict for DVC metrics, dvclive and kfp.

WLASL papers report two accuracies, and they differ a lot on imbalanced splits:

- *per-instance* top-k: the share of test clips whose gloss is among the k best scores;
- *per-class* top-k: top-k accuracy within each gloss, averaged over glosses (each
  gloss counts once however many clips it has).

Macro precision/recall/F1 (scikit-learn) average over the glosses present in the
evaluated split: a gloss with no test clip has no recall to report, and counting
it as 0 would punish the model for the split, not for its predictions.

:func:`write_reports` writes ``metrics.json`` with flat keys (``test_top1``,
``test_per_class_top1``, ``test_macro_f1``, ``val_top1``...), so ``dvc metrics diff``
and ``dvc exp show`` can compare runs column by column.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from signflow import atomic
from signflow.drift import build_reference
from signflow.scores import softmax, top_classes

if TYPE_CHECKING:
    from signflow.inference import Predictor

log = logging.getLogger(__name__)

DEFAULT_TOP_K = (1, 5, 10)
METRICS_FILE = "metrics.json"
CONFUSION_CSV = "confusion.csv"
CONFUSION_PNG = "confusion.png"
PER_CLASS_CSV = "per_class.csv"
PREDICTIONS_CSV = "predictions.csv"
PER_SIGNER_CSV = "per_signer.csv"
REFERENCE_FILE = "prediction_reference.json"
# Above this many classes the confusion PNG drops its tick labels (they would overlap).
MAX_LABELLED_CLASSES = 40


@dataclass
class SplitPredictions:
    """Model outputs on one split: ``logits (N, C)`` and true ``labels (N,)`` for ``video_ids``."""

    split: str
    video_ids: list[str]
    labels: np.ndarray
    logits: np.ndarray


def _check(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise ValueError(f"logits must be (N, {num_classes}) for {num_classes} class names, got {logits.shape}")
    if labels.shape != (logits.shape[0],):
        raise ValueError(f"labels must be ({logits.shape[0]},), got {labels.shape}")
    if logits.shape[0] == 0:
        raise ValueError("no samples to evaluate")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must be integers in [0, {num_classes})")
    if not np.all(np.isfinite(logits)):
        raise ValueError("logits contain NaN or infinity (a diverged model?)")
    return logits, labels.astype(np.int64)


def topk_hits(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Boolean ``(N,)``: is the true label among the ``k`` highest logits (``k`` capped at C)."""
    k = min(k, logits.shape[1])
    # A label is in the top k iff fewer than k classes score strictly higher (ties count in its favour).
    true_scores = logits[np.arange(len(labels)), labels]
    return (logits > true_scores[:, None]).sum(axis=1) < k


def compute_metrics(
    logits: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    top_k: Sequence[int] = DEFAULT_TOP_K,
) -> dict[str, Any]:
    """Scalar metrics plus ``per_class_report`` rows and the ``confusion_matrix`` (C x C, rows = actual).

    Scalars: ``samples``, ``loss`` (mean cross-entropy), ``top{k}`` and
    ``per_class_top{k}`` for each k, ``macro_precision``, ``macro_recall``, ``macro_f1``.
    """
    num_classes = len(class_names)
    logits, labels = _check(logits, labels, num_classes)
    predicted = logits.argmax(axis=1)
    probabilities = softmax(logits)
    present = np.unique(labels)
    metrics: dict[str, Any] = {
        "samples": int(len(labels)),
        "loss": float(-np.mean(np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-12, None)))),
    }
    per_class_hits: dict[int, np.ndarray] = {}
    for k in sorted(set(top_k)):
        hits = topk_hits(logits, labels, k)
        per_class = np.array([hits[labels == c].mean() for c in present])
        per_class_hits[k] = per_class
        metrics[f"top{k}"] = float(hits.mean())
        metrics[f"per_class_top{k}"] = float(per_class.mean())
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predicted, labels=present, average="macro", zero_division=0
    )
    metrics.update(macro_precision=float(precision), macro_recall=float(recall), macro_f1=float(f1))

    p_each, r_each, f_each, support = precision_recall_fscore_support(
        labels, predicted, labels=np.arange(num_classes), average=None, zero_division=0
    )
    index_of = {int(c): i for i, c in enumerate(present)}
    rows = []
    for c in range(num_classes):
        row: dict[str, Any] = {
            "label": c,
            "gloss": class_names[c],
            "support": int(support[c]),
            "precision": float(p_each[c]),
            "recall": float(r_each[c]),
            "f1": float(f_each[c]),
        }
        for k, per_class in per_class_hits.items():
            if k != 1:  # top-1 accuracy of a class is its recall
                row[f"top{k}"] = float(per_class[index_of[c]]) if c in index_of else None
        rows.append(row)
    metrics["per_class_report"] = rows
    metrics["confusion_matrix"] = confusion_matrix(labels, predicted, labels=np.arange(num_classes))
    return metrics


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float | int]:
    """The scalar entries of a :func:`compute_metrics` dict (what goes to DVC/dvclive/kfp)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def flat_metrics(per_split: Mapping[str, Mapping[str, Any]]) -> dict[str, float | int]:
    """``{"test": {"top1": .9}, "val": {...}}`` -> ``{"test_top1": .9, "val_...": ...}``."""
    return {
        f"{split}_{key}": value
        for split, metrics in per_split.items()
        for key, value in scalar_metrics(metrics).items()
    }


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _fmt(value: Any) -> Any:
    return "" if value is None else (round(value, 6) if isinstance(value, float) else value)


def plot_confusion(path: str | os.PathLike[str], matrix: np.ndarray, class_names: Sequence[str], title: str) -> None:
    """Row-normalised confusion matrix as a PNG (matplotlib's Agg backend: no display needed)."""
    from matplotlib.figure import Figure  # Figure without pyplot: no global state, no GUI backend

    count = len(class_names)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=np.float64), where=rows > 0)
    side = min(20.0, max(5.0, 0.3 * count + 2))
    figure = Figure(figsize=(side, side), dpi=100)
    axes = figure.add_subplot()
    image = axes.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the actual gloss")
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    axes.set_title(title)
    if count <= MAX_LABELLED_CLASSES:
        axes.set_xticks(range(count), labels=list(class_names), rotation=90, fontsize=7)
        axes.set_yticks(range(count), labels=list(class_names), fontsize=7)
    figure.tight_layout()
    with atomic.atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")


def write_reports(
    out_dir: str | os.PathLike[str],
    predictions: Mapping[str, SplitPredictions],
    class_names: Sequence[str],
    *,
    top_k: Sequence[int] = DEFAULT_TOP_K,
    primary: str | None = None,
    extra_metrics: Mapping[str, float | int] | None = None,
) -> dict[str, float | int]:
    """Compute metrics for every split and write the report files; returns the flat metrics.

    Files (each written atomically): ``metrics.json`` (flat, all splits),
    ``per_class.csv`` and ``predictions.csv`` (all splits, a ``split`` column),
    and for the ``primary`` split (``test`` when evaluated): ``confusion.csv``
    (``actual,predicted`` per clip, DVC's confusion template), ``confusion.png``
    and ``prediction_reference.json`` (drift monitoring's baseline).
    """
    if not predictions:
        raise ValueError("nothing to report: no split had any clip")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    primary = primary or ("test" if "test" in predictions else next(iter(predictions)))
    if primary not in predictions:
        raise ValueError(f"primary split {primary!r} was not evaluated (have {sorted(predictions)})")

    per_split = {
        split: compute_metrics(result.logits, result.labels, class_names, top_k)
        for split, result in predictions.items()
    }
    flat = flat_metrics(per_split)
    flat.update(extra_metrics or {})
    atomic.write_json(out_dir / METRICS_FILE, flat)

    per_class_rows = []
    ks = [k for k in sorted(set(top_k)) if k != 1]
    for split, metrics in per_split.items():
        for row in metrics["per_class_report"]:
            per_class_rows.append(
                [split, row["label"], row["gloss"], row["support"]]
                + [_fmt(row[key]) for key in ("precision", "recall", "f1")]
                + [_fmt(row[f"top{k}"]) for k in ks]
            )
    header = ["split", "label", "gloss", "support", "precision", "recall", "f1"] + [f"top{k}" for k in ks]
    atomic.write_text(out_dir / PER_CLASS_CSV, _csv_text(header, per_class_rows))

    prediction_rows = []
    for split, result in predictions.items():
        probabilities = softmax(np.asarray(result.logits, dtype=np.float64))
        order = top_classes(probabilities, min(5, len(class_names)))
        for i, video_id in enumerate(result.video_ids):
            top = order[i]
            prediction_rows.append([
                split, video_id, class_names[int(result.labels[i])], class_names[int(top[0])],
                int(top[0] == result.labels[i]), round(float(probabilities[i, top[0]]), 6),
                " ".join(class_names[int(c)] for c in top),
            ])  # fmt: skip
    atomic.write_text(
        out_dir / PREDICTIONS_CSV,
        _csv_text(["split", "video_id", "label", "predicted", "correct", "confidence", "top5"], prediction_rows),
    )

    chosen = predictions[primary]
    predicted = np.asarray(chosen.logits).argmax(axis=1)
    atomic.write_text(
        out_dir / CONFUSION_CSV,
        _csv_text(
            ["actual", "predicted"],
            [[class_names[int(a)], class_names[int(p)]] for a, p in zip(chosen.labels, predicted, strict=True)],
        ),
    )
    plot_confusion(
        out_dir / CONFUSION_PNG,
        per_split[primary]["confusion_matrix"],
        class_names,
        f"{primary}: top-1 {per_split[primary]['top1']:.1%} over {len(chosen.labels)} clips",
    )
    write_prediction_reference(out_dir / REFERENCE_FILE, chosen.logits, len(class_names))
    return flat


def read_signers(manifest: str | os.PathLike[str]) -> tuple[dict[str, str], set[str]]:
    """``(signer by video_id, signers of the train split)`` from the split stage's manifest.csv."""
    path = Path(manifest)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: split manifest not found (run the split stage first)")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {"video_id", "signer", "split"} <= set(rows[0]):
        raise ValueError(f"{path}: expected columns video_id, signer, split; got {sorted(rows[0])}")
    signer_of = {row["video_id"]: row["signer"] for row in rows if row.get("signer")}
    return signer_of, {row["signer"] for row in rows if row["split"] == "train" and row.get("signer")}


def honesty_metrics(
    predictions: Mapping[str, SplitPredictions],
    out_dir: str | os.PathLike[str],
    *,
    abstain_precision: float | None,
    manifest: str | os.PathLike[str] | None = None,
) -> dict[str, float]:
    """The abstain threshold (fitted on val only) with coverage per split, and per-signer accuracy.

    Writes ``per_signer.csv`` (every evaluated split) when ``manifest`` is given; returns flat
    metrics: ``abstain_threshold``, ``<split>_coverage``, ``<split>_accepted_top1``,
    ``<split>_per_signer_top1_mean/min/max``, ``<split>_unseen_signer_top1``...
    """
    from signflow import calibration

    metrics: dict[str, float] = {}
    if abstain_precision is not None:
        if "val" not in predictions:
            log.warning("evaluate.abstain_precision is set but val is not evaluated: no abstain threshold")
        else:
            val = predictions["val"]
            threshold = calibration.abstain_threshold(val.logits, val.labels, abstain_precision)
            metrics["abstain_threshold"] = threshold
            for split, result in predictions.items():
                kept = calibration.coverage(result.logits, result.labels, threshold)
                metrics[f"{split}_coverage"] = kept["coverage"]
                metrics[f"{split}_accepted_top1"] = kept["accepted_top1"]
    if manifest is not None:
        signer_of, train_signers = read_signers(manifest)
        rows_out = []
        for split, result in predictions.items():
            rows, summary = calibration.per_signer(
                result.video_ids, result.logits, result.labels, signer_of, train_signers
            )
            rows_out += [[split, r["signer"], r["clips"], _fmt(r["top1"]), int(bool(r["seen_in_train"]))] for r in rows]
            metrics.update({f"{split}_{key}": value for key, value in summary.items()})
        atomic.write_text(
            Path(out_dir) / PER_SIGNER_CSV,
            _csv_text(["split", "signer", "clips", "top1", "seen_in_train"], rows_out),
        )
    return metrics


def write_prediction_reference(path: str | os.PathLike[str], logits: np.ndarray, num_classes: int) -> None:
    """The drift baseline the service compares live predictions with (:mod:`signflow.drift`)."""
    probabilities = softmax(np.asarray(logits, dtype=np.float64))
    reference = build_reference(probabilities.argmax(axis=1), probabilities.max(axis=1), num_classes)
    atomic.write_json(path, reference)


# --------------------------------------------------------------------------- scoring a split


def predict_split(
    predictor: Predictor,
    split_dir: str | os.PathLike[str],
    split: str,
    *,
    clips: int = 1,
    batch_size: int = 32,
    progress: bool = True,
) -> SplitPredictions:
    """Score every clip of an extract-stage split folder with ``predictor`` (the serving code path).

    Labels are taken by gloss through the model's own label map, so features and
    model that disagree on the vocabulary fail here instead of scoring garbage.
    Video splits feed the stored frames as they are; landmark splits feed the
    normalised full sequence (the landmark dataset at ``seq_len = stored_frames``),
    and the predictor then samples ``seq_len`` frames exactly as for video.
    """
    from tqdm import tqdm

    from signflow.shards import ShardReader

    split_dir = Path(split_dir)
    if not (split_dir / "index.json").is_file():
        raise FileNotFoundError(f"{split_dir}: split folder missing (no index.json); run the extract stage first")
    reader = ShardReader(split_dir)
    index_of = {gloss: i for i, gloss in enumerate(predictor.label_map)}
    unknown = sorted({str(item.get("gloss")) for item in reader.items} - set(index_of))
    if unknown:
        raise ValueError(
            f"{split_dir}: glosses {unknown[:5]} are not in the model's label map "
            f"({len(index_of)} glosses); features and model come from different splits"
        )
    labels = np.array([index_of[str(item["gloss"])] for item in reader.items], dtype=np.int64)
    video_ids = [str(item.get("video_id", i)) for i, item in enumerate(reader.items)]
    kind = reader.metadata.get("kind", "video")
    if kind == "landmarks":
        from signflow.training.landmark_data import LandmarkDataset

        stored = reader.fields["points"].shape[0]
        dataset = LandmarkDataset(reader, seq_len=stored, train=False)

        def read(i: int) -> np.ndarray:
            return dataset[i][0].numpy()
    elif "frames" in reader.fields:

        def read(i: int) -> np.ndarray:
            return reader.read(i, "frames")
    else:
        raise ValueError(f"{split_dir}: unknown split kind {kind!r} with fields {sorted(reader.fields)}")

    chunks = []
    with tqdm(total=len(reader), desc=f"evaluate {split}", unit="clip", disable=not progress) as bar:
        for begin in range(0, len(reader), batch_size):
            positions = range(begin, min(begin + batch_size, len(reader)))
            batch = np.stack([read(i) for i in positions])
            chunks.append(predictor.logits(batch, clips, batch_size=batch_size))
            bar.update(len(positions))
    logits = np.concatenate(chunks) if chunks else np.zeros((0, predictor.num_classes), dtype=np.float32)
    return SplitPredictions(split=split, video_ids=video_ids, labels=labels, logits=logits)
