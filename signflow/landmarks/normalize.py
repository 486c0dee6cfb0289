"""Landmark normalisation: the one implementation shared by training, evaluation and serving.

Raw MediaPipe coordinates depend on where the signer stands, how far from the
camera and the frame's aspect ratio; the sign does not. :func:`prepare` removes
those nuisances, in this order:

1. **Gap filling** (:func:`fill_gaps`): a joint missing for at most ``max_gap``
   consecutive frames *between* two frames where it was seen is linearly
   interpolated and marked present (the detector loses a moving hand for a frame
   or two far more often than the hand really leaves the picture). Longer gaps
   and gaps at the clip's start/end stay missing: inventing a whole hand shape is
   worse than saying "no hand".
2. **Isotropic units**: MediaPipe's ``x`` is a fraction of the width and ``y`` of
   the height; ``x`` (and ``z``, which MediaPipe scales like ``x``) are multiplied
   by ``width / height`` so a circle stays a circle.
3. **Centre and scale** (:func:`normalize`): subtract the shoulder midpoint and
   divide by the shoulder width, each the *median over the clip's frames* with
   both shoulders seen, so one bad frame cannot move the whole clip and the
   signer's motion relative to the body is kept. Layouts without a pose (the
   hands-only ``hands`` layout) use the median wrist position as the centre and
   4 x the median palm length (wrist to middle-finger knuckle, about a quarter of
   a shoulder width) as the scale, so both layouts come out in similar units.
4. Missing joints are set to 0 *and* flagged in the mask; models get the mask as
   an input channel (:func:`model_input`), so a zero is never mistaken for a point.

:func:`mirror` (horizontal flip that also swaps left/right joints, so the
signer's left hand stays in the left-hand slots) is an optional augmentation.
"""

from __future__ import annotations

import numpy as np

from signflow.landmarks.layout import (
    HAND_MIDDLE_MCP,
    HAND_WRIST,
    LEFT_SHOULDER,
    RIGHT_SHOULDER,
    Layout,
)
from signflow.sampling import uniform_indices

# A palm (wrist to middle knuckle) is about a quarter of a shoulder width on adults.
PALM_TO_SHOULDER = 4.0
_EPS = 1e-6


def fill_gaps(points: np.ndarray, mask: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Linearly interpolate interior runs of at most ``max_gap`` missing frames, per joint.

    ``points``: ``(T, J, C)``; ``mask``: ``(T, J)`` bool. Returns new arrays.
    """
    points = np.array(points, dtype=np.float32, copy=True)
    mask = np.array(mask, dtype=bool, copy=True)
    if max_gap <= 0 or len(points) < 3:
        return points, mask
    num_frames = len(points)
    frames = np.arange(num_frames)
    for joint in range(mask.shape[1]):
        seen = mask[:, joint]
        if seen.all() or seen.sum() < 2:
            continue
        seen_frames = frames[seen]
        # Every missing frame lies in the gap between the two seen frames around it.
        after = np.searchsorted(seen_frames, frames)  # index of the next seen frame
        interior = (~seen) & (after > 0) & (after < len(seen_frames))
        if not interior.any():
            continue
        next_seen = seen_frames[np.minimum(after, len(seen_frames) - 1)]
        prev_seen = seen_frames[np.maximum(after - 1, 0)]
        gap = next_seen - prev_seen - 1
        fill = interior & (gap <= max_gap)
        if not fill.any():
            continue
        weight = ((frames - prev_seen) / np.maximum(next_seen - prev_seen, 1))[fill, None]
        points[fill, joint] = (1 - weight) * points[prev_seen[fill], joint] + weight * points[next_seen[fill], joint]
        mask[fill, joint] = True
    return points, mask


def _reference(points: np.ndarray, mask: np.ndarray, layout: Layout) -> tuple[np.ndarray, float] | None:
    """``(centre_xy, scale)`` of a clip in isotropic units, or None when nothing is seen."""
    if layout.has("pose"):
        both = mask[:, LEFT_SHOULDER] & mask[:, RIGHT_SHOULDER]
        if both.any():
            left, right = points[both, LEFT_SHOULDER, :2], points[both, RIGHT_SHOULDER, :2]
            width = float(np.median(np.linalg.norm(left - right, axis=-1)))
            if width > _EPS:
                return np.median((left + right) / 2, axis=0), width
    wrists, palms = [], []
    for hand in ("left_hand", "right_hand"):
        if not layout.has(hand):
            continue
        start = layout.parts[hand][0]
        wrist, knuckle = start + HAND_WRIST, start + HAND_MIDDLE_MCP
        seen = mask[:, wrist] & mask[:, knuckle]
        wrists.append(points[seen, wrist, :2])
        palms.append(np.linalg.norm(points[seen, wrist, :2] - points[seen, knuckle, :2], axis=-1))
    wrist_xy, palm = np.concatenate(wrists or [np.zeros((0, 2))]), np.concatenate(palms or [np.zeros(0)])
    if len(palm) and float(np.median(palm)) > _EPS:
        return np.median(wrist_xy, axis=0), PALM_TO_SHOULDER * float(np.median(palm))
    if mask.any():  # a clip with only a few unconnected points: centre them, keep the scale
        return points[mask][:, :2].mean(axis=0), 1.0
    return None


def normalize(points: np.ndarray, mask: np.ndarray, layout: Layout, *, aspect: float = 1.0) -> np.ndarray:
    """Centre on the shoulder midpoint, scale by shoulder width (see the module docstring).

    ``aspect`` is the frame's ``width / height`` (1.0 when unknown, as for data
    that only kept normalised coordinates). Missing joints come out as 0.
    """
    points = np.array(points, dtype=np.float32, copy=True)
    mask = np.asarray(mask, dtype=bool)
    if points.ndim != 3 or points.shape[:2] != mask.shape or points.shape[1] != layout.num_joints:
        raise ValueError(
            f"expected points (T, {layout.num_joints}, C) and mask (T, {layout.num_joints}) for layout "
            f"{layout.name!r}, got {points.shape} and {mask.shape}"
        )
    points[..., 0] *= aspect
    if points.shape[-1] > 2:
        points[..., 2] *= aspect
    reference = _reference(points, mask, layout)
    if reference is None:
        return np.zeros_like(points)
    centre, scale = reference
    points[..., :2] -= centre
    points /= scale
    points[~mask] = 0.0
    return points


def mirror(points: np.ndarray, mask: np.ndarray, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Flip a *normalised* clip horizontally (x -> -x) and swap left/right joints."""
    points = np.array(points[:, layout.mirror], dtype=np.float32, copy=True)
    points[..., 0] *= -1.0
    return points, np.array(mask[:, layout.mirror], dtype=bool, copy=True)


def prepare(
    points: np.ndarray, mask: np.ndarray, layout: Layout, *, aspect: float = 1.0, max_gap: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Gap filling then normalisation: raw stored landmarks -> ``(points, mask)`` for a model."""
    points, mask = fill_gaps(points, mask, max_gap)
    return normalize(points, mask, layout, aspect=aspect), mask


def model_input(points: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(T, J, C + 1)`` float32: the normalised coordinates plus the mask as the last channel."""
    return np.concatenate([points.astype(np.float32), mask[..., None].astype(np.float32)], axis=-1)


def stored_input(
    points: np.ndarray,
    mask: np.ndarray,
    layout: Layout,
    *,
    stored_frames: int,
    aspect: float = 1.0,
    max_gap: int = 0,
) -> np.ndarray:
    """Full-frame-rate landmarks of one clip -> the ``(stored_frames, J, C + 1)`` a model is scored on.

    Exactly what extraction stores (uniform resampling to ``stored_frames``, float16)
    followed by the evaluation dataset's normalisation, so serving a video gives the
    same input as evaluating its extracted features.
    """
    keep = uniform_indices(len(points), stored_frames)
    stored = np.asarray(points)[keep].astype(np.float16).astype(np.float32)
    stored_mask = np.asarray(mask, dtype=bool)[keep]
    prepared, prepared_mask = prepare(stored, stored_mask, layout, aspect=aspect, max_gap=max_gap)
    return model_input(prepared, prepared_mask)
