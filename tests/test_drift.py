"""signflow.drift: PSI values computed by hand, the reference format, the sliding window."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from signflow.drift import DriftMonitor, DriftReferenceError, build_reference, psi, validate_reference

# (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5) = 0.25 ln 2 + 0.25 ln 1.5
PSI_HALF_TO_QUARTERS = 0.25 * 0.6931471806 + 0.25 * 0.4054651081  # 0.2746530722


def test_psi_identical_distributions_is_zero() -> None:
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == pytest.approx(0.0, abs=1e-12)


def test_psi_hand_computed_proportions_and_counts() -> None:
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.2746530722, abs=1e-9)
    # Counts are normalised first: the same histograms given as counts.
    assert psi([2, 2], [1, 3]) == pytest.approx(0.2746530722, abs=1e-9)
    # PSI is symmetric in its arguments.
    assert psi([0.25, 0.75], [0.5, 0.5]) == pytest.approx(0.2746530722, abs=1e-9)
    # (0.75 - 0.8) ln(0.75 / 0.8) + (0.25 - 0.2) ln(0.25 / 0.2) = 0.0032269 + 0.0111572
    assert psi([8, 2], [3, 1]) == pytest.approx(0.0143841, abs=1e-6)


def test_psi_empty_bin_is_floored_at_eps() -> None:
    # actual = [1, 0] -> [1, 1e-4]:  (1 - 0.5) ln(1 / 0.5) + (1e-4 - 0.5) ln(1e-4 / 0.5)
    #                              = 0.3465736 + 0.4999 * 8.5171932 = 4.6043184
    assert psi([1, 1], [1, 0], eps=1e-4) == pytest.approx(4.6043184, abs=1e-6)
    # A larger floor bounds an empty bin's contribution more tightly.
    assert psi([1, 1], [1, 0], eps=1e-2) < psi([1, 1], [1, 0], eps=1e-4)


@pytest.mark.parametrize(
    ("expected", "actual", "message"),
    [
        ([0.5, 0.5], [1.0], "same length"),
        ([], [], "same length"),
        ([0.5, -0.5], [0.5, 0.5], "non-negative"),
        ([0.0, 0.0], [0.5, 0.5], "empty"),
        ([0.5, float("nan")], [0.5, 0.5], "finite"),
    ],
)
def test_psi_rejects_bad_histograms(expected: list[float], actual: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        psi(expected, actual)


def test_build_reference_counts_and_json_round_trip() -> None:
    labels = np.array([0, 0, 2, 1, 2, 2])
    conf = np.array([0.05, 0.55, 0.95, 1.0, 0.1, 0.5])
    ref = build_reference(labels, conf, num_classes=4, confidence_bins=2)
    assert ref["class_counts"] == [2, 1, 3, 0]
    assert ref["confidence_edges"] == [0.0, 0.5, 1.0]
    # [0, 0.5) holds 0.05 and 0.1; [0.5, 1.0] holds the rest, 1.0 included (last bin closed).
    assert ref["confidence_counts"] == [2, 4]
    assert ref["samples"] == 6
    assert json.loads(json.dumps(ref)) == ref
    validate_reference(json.loads(json.dumps(ref)))


@pytest.mark.parametrize(
    ("labels", "conf", "num_classes", "message"),
    [
        ([0, 1], [0.5], 3, "equal length"),
        ([], [], 3, "zero predictions"),
        ([0, 3], [0.5, 0.5], 3, r"\[0, 3\)"),
        ([0, 1], [0.5, 1.5], 3, "probabilities"),
        ([0.0, 1.0], [0.5, 0.5], 3, "integers"),
        ([0, 0], [0.5, 0.5], 1, "num_classes"),
    ],
)
def test_build_reference_rejects_bad_input(labels: list, conf: list, num_classes: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_reference(np.array(labels), np.array(conf), num_classes)


def test_validate_reference_names_the_problem() -> None:
    ref = build_reference(np.array([0, 1]), np.array([0.6, 0.7]), num_classes=2)
    with pytest.raises(DriftReferenceError, match="kind"):
        validate_reference({**ref, "kind": "something-else"})
    with pytest.raises(DriftReferenceError, match="class_counts"):
        validate_reference({**ref, "class_counts": [1, 2, 3]})
    with pytest.raises(DriftReferenceError, match="confidence_counts"):
        validate_reference({**ref, "confidence_counts": [1]})
    with pytest.raises(DriftReferenceError, match="missing"):
        validate_reference({k: v for k, v in ref.items() if k != "confidence_edges"})


def _two_class_reference() -> dict:
    # classes 50/50; confidences 8 x 0.6 and 2 x 0.9 over 4 bins -> [0, 0, 8, 2]
    return build_reference(
        np.array([0] * 5 + [1] * 5), np.array([0.6] * 8 + [0.9] * 2), num_classes=2, confidence_bins=4
    )


def test_monitor_returns_none_until_window_full_then_hand_computed_score() -> None:
    monitor = DriftMonitor(_two_class_reference(), window=4)
    assert monitor.update(np.array([[0.7, 0.3], [0.7, 0.3]])) is None
    assert monitor.update(np.array([[0.6, 0.4]])) is None
    score = monitor.update(np.array([[0.2, 0.8]]))
    # classes [0, 0, 0, 1] -> [0.75, 0.25] vs [0.5, 0.5]: 0.2746531
    # confidences 0.7 0.7 0.6 0.8 -> bins [0, 0, 3, 1] vs [0, 0, 8, 2]: 0.0143841
    assert monitor.last_components == {
        "class_psi": pytest.approx(PSI_HALF_TO_QUARTERS, abs=1e-9),
        "confidence_psi": pytest.approx(0.0143841, abs=1e-6),
    }
    assert score == pytest.approx(PSI_HALF_TO_QUARTERS, abs=1e-9)  # max of the two

    # Slide: the first 0.7 leaves, a confident class-1 prediction arrives.
    score = monitor.update(np.array([0.1, 0.9]))
    # classes [0, 0, 1, 1] -> no class shift; confidences 0.7 0.6 0.8 0.9 -> [0, 0, 2, 2] vs [0, 0, 8, 2]:
    # (0.5 - 0.8) ln(0.5 / 0.8) + (0.5 - 0.2) ln(0.5 / 0.2) = 0.1410011 + 0.2748872 = 0.4158883
    assert monitor.last_components["class_psi"] == pytest.approx(0.0, abs=1e-12)
    assert score == pytest.approx(0.4158883, abs=1e-6)
    assert monitor.samples == 4


def test_monitor_groups_rare_classes_when_window_is_small() -> None:
    # window 20 allows 20 // 10 = 2 class bins: the most frequent reference class (2) and "other".
    ref = build_reference(np.array([0, 1, 2, 2]), np.full(4, 0.95), num_classes=5)
    monitor = DriftMonitor(ref, window=20)

    def rows(cls: int, n: int) -> np.ndarray:
        probs = np.full((n, 5), 0.0125)
        probs[:, cls] = 0.95
        return probs

    assert monitor.update(rows(2, 15)) is None
    score = monitor.update(rows(0, 5))
    # bins [class 2, other]: reference [0.5, 0.5], recent [0.75, 0.25]; confidences unchanged.
    assert monitor.last_components["confidence_psi"] == pytest.approx(0.0, abs=1e-12)
    assert score == pytest.approx(PSI_HALF_TO_QUARTERS, abs=1e-9)
    # 5 x class 4 push 5 x class 2 out: [10 x class 2, 5 x class 0 + 5 x class 4] = [0.5, 0.5]. Classes 0
    # and 4 share "other", so which rare class was predicted does not matter (too few samples to tell).
    assert monitor.update(rows(4, 5)) == pytest.approx(0.0, abs=1e-12)


def test_monitor_rejects_wrong_shapes_and_bad_reference() -> None:
    monitor = DriftMonitor(_two_class_reference(), window=4)
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        monitor.update(np.ones((3, 5)) / 5)
    with pytest.raises(DriftReferenceError):
        DriftMonitor({"kind": "nope"}, window=4)
    with pytest.raises(ValueError, match="window"):
        DriftMonitor(_two_class_reference(), window=1)


def test_monitor_is_thread_safe() -> None:
    monitor = DriftMonitor(_two_class_reference(), window=50)
    rng = np.random.default_rng(0)
    batches = [rng.dirichlet([1.0, 1.0], size=7) for _ in range(40)]

    def work(chunk: list[np.ndarray]) -> None:
        for batch in chunk:
            monitor.update(batch)

    threads = [threading.Thread(target=work, args=(batches[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # The incremental counts must equal a recount of the window (no lost or double updates).
    assert monitor.samples == 50
    assert monitor._class_counts.sum() == 50 and monitor._conf_counts.sum() == 50
    recount = np.bincount([c for c, _ in monitor._recent], minlength=2)
    assert recount.tolist() == monitor._class_counts.tolist()
