"""Honest answers: an abstain threshold chosen on val, and accuracy per signer.

A recogniser that always names a gloss is wrong most confidently on signs it never
learned. :func:`abstain_threshold` picks, on the **validation** split, the lowest
top-1 confidence at which the predictions kept (confidence >= threshold) reach the
precision the user asked for (``evaluate.abstain_precision``); below it the service
answers "not recognised". :func:`coverage` then reports on test what that costs
(share of clips answered) and buys (accuracy on the answered ones). The threshold is
never fitted on test.

:func:`per_signer` answers the question users ask first ("how does it do on people
it has not seen?"): top-1 per signer and for the test signers absent from train.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from signflow.scores import softmax


def top1_confidence(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(predicted class, softmax probability of it)`` per row."""
    probabilities = softmax(np.asarray(logits, dtype=np.float64))
    predicted = probabilities.argmax(axis=1)
    return predicted, probabilities[np.arange(len(predicted)), predicted]


def abstain_threshold(logits: np.ndarray, labels: np.ndarray, precision: float, *, min_accepted: int = 10) -> float:
    """Lowest confidence whose accepted set (>= it) has precision >= ``precision`` on these clips.

    Scans thresholds at each clip's confidence, from high to low, and keeps the
    lowest one that still meets the target with at least ``min_accepted`` clips
    (a precision measured on three clips means nothing). Returns 1.0 (abstain
    always, apart from certainty) when no threshold meets the target, and 0.0 when
    even accepting everything does.
    """
    labels = np.asarray(labels)
    if len(labels) == 0:
        raise ValueError("abstain_threshold needs at least one labelled clip")
    predicted, confidence = top1_confidence(logits)
    order = np.argsort(-confidence, kind="stable")
    correct = (predicted[order] == labels[order]).astype(np.float64)
    running = np.cumsum(correct) / np.arange(1, len(order) + 1)
    if running[-1] >= precision:
        return 0.0
    sorted_confidence = confidence[order]
    best = 1.0
    for position in range(len(order)):
        # Ties: a threshold accepts every clip with the same confidence, so judge at the last of them.
        if position + 1 < len(order) and sorted_confidence[position + 1] == sorted_confidence[position]:
            continue
        if position + 1 >= min_accepted and running[position] >= precision:
            best = float(sorted_confidence[position])
    return best


def coverage(logits: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """``coverage`` (share answered), ``accepted_top1`` (accuracy on those; 0 when none), ``accepted``."""
    predicted, confidence = top1_confidence(logits)
    accepted = confidence >= threshold
    correct = predicted == np.asarray(labels)
    return {
        "coverage": float(accepted.mean()) if len(accepted) else 0.0,
        "accepted_top1": float(correct[accepted].mean()) if accepted.any() else 0.0,
        "accepted": int(accepted.sum()),
    }


def per_signer(
    video_ids: Sequence[str],
    logits: np.ndarray,
    labels: np.ndarray,
    signer_of: Mapping[str, str],
    train_signers: set[str],
) -> tuple[list[dict[str, object]], dict[str, float]]:
    """Rows ``signer, clips, top1, seen_in_train`` and summary metrics over signers.

    Summary: ``signers``, ``per_signer_top1_mean`` / ``_min`` / ``_max`` (signers with
    at least one clip), ``unseen_signer_clips`` and ``unseen_signer_top1`` (clips by
    signers absent from train; omitted when there are none). Clips without a known
    signer are left out.
    """
    predicted = np.asarray(logits).argmax(axis=1)
    correct = predicted == np.asarray(labels)
    groups: dict[str, list[bool]] = {}
    for video_id, hit in zip(video_ids, correct, strict=True):
        signer = signer_of.get(video_id)
        if signer not in (None, ""):
            groups.setdefault(str(signer), []).append(bool(hit))
    rows = [
        {
            "signer": signer,
            "clips": len(hits),
            "top1": float(np.mean(hits)),
            "seen_in_train": signer in train_signers,
        }
        for signer, hits in sorted(groups.items(), key=lambda item: (len(item[0]), item[0]))
    ]
    summary: dict[str, float] = {}
    if rows:
        accuracies = [float(row["top1"]) for row in rows]  # type: ignore[arg-type]
        summary.update(
            signers=float(len(rows)),
            per_signer_top1_mean=float(np.mean(accuracies)),
            per_signer_top1_min=float(np.min(accuracies)),
            per_signer_top1_max=float(np.max(accuracies)),
        )
        unseen = [hit for row in rows if not row["seen_in_train"] for hit in groups[str(row["signer"])]]
        if unseen:
            summary.update(unseen_signer_clips=float(len(unseen)), unseen_signer_top1=float(np.mean(unseen)))
    return rows, summary
