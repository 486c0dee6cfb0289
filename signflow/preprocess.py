"""The one video -> stored-frames implementation, shared by extract and serving.

Extract turns every training video into ``stored_frames`` RGB frames of
``frame_size`` x ``frame_size``; serving must turn an uploaded clip into exactly
the same kind of array, or the model sees different inputs in production than
in training. Both call this module (extract through :mod:`signflow.extract.rgb`,
which runs it over every crop plan in parallel), with the
:class:`signflow.feature_spec.RgbFeatureSpec` that extract writes to
``data/features/preprocess.json`` (and train carries into the model file).

Frames are decoded once and held unconverted until the clip's true length picks the
``stored_frames`` ones (:func:`signflow.sampling.uniform_indices`: spread evenly over the clip; a
clip shorter than that keeps every frame and repeats its first/last frames, never stretching
time). Each stored frame: its box converted to RGB alone (the same pixels as converting the whole
frame), resized with ``cv2.INTER_AREA`` (the anti-aliased choice for downscaling) so the longer
side is ``frame_size``, and, when ``square`` is set, letterboxed with black so the signer's
proportions are never distorted. ``extract.resize: swscale_area`` (opt-in, recorded in the spec)
converts and area-scales the box's planes in one swscale pass instead: about 5x less work per
stored frame, slightly different pixels.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from signflow import sampling, video
from signflow.feature_spec import RgbFeatureSpec

Box = Sequence[int] | None
log = logging.getLogger(__name__)


def _fitted(height: int, width: int, config: RgbFeatureSpec) -> tuple[int, int]:
    """``(width, height)`` of a ``height`` x ``width`` picture scaled to the stored size: the longer side
    ``frame_size`` and the proportions kept when ``square`` is set (letterboxed by :func:`_letterbox`)."""
    size = config.frame_size
    if not config.square or height == width:
        return size, size
    scale = size / max(height, width)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _letterbox(small: np.ndarray, config: RgbFeatureSpec) -> np.ndarray:
    size = config.frame_size
    if small.shape[:2] == (size, size):
        return small
    new_h, new_w = small.shape[:2]
    out = np.zeros((size, size, 3), dtype=np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out[top : top + new_h, left : left + new_w] = small
    return out


def resize_frame(frame: np.ndarray, box: Box, config: RgbFeatureSpec) -> np.ndarray:
    """Crop one ``(H, W, 3)`` RGB frame to ``box`` and resize it to ``frame_size`` square (``config.resize``)."""
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB frame, got shape {frame.shape}")
    clipped = video.clip_box(box, frame.shape[1], frame.shape[0])
    if config.resize == "swscale_area":
        return _swscale_stored(frame, clipped, frame.shape[0], frame.shape[1], config)
    if clipped is not None:
        x0, y0, x1, y1 = clipped
        frame = frame[y0:y1, x0:x1]
    new_w, new_h = _fitted(frame.shape[0], frame.shape[1], config)
    return _letterbox(cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_AREA), config)


def store_frame(frame: Any, box: Box, config: RgbFeatureSpec) -> np.ndarray:
    """One decoded (PyAV) frame -> its stored ``(S, S, 3)`` frame.

    ``opencv_area``: only the box is converted to RGB (:func:`signflow.video.to_rgb`: the same pixels
    as converting the whole frame), then :func:`resize_frame`. ``swscale_area``: one swscale pass
    from the decoded planes (:func:`signflow.video.scaled_rgb`).
    """
    clipped = video.clip_box(box, frame.width, frame.height)
    if config.resize == "swscale_area":
        return _swscale_stored(frame, clipped, frame.height, frame.width, config)
    return resize_frame(video.to_rgb(frame, clipped), None, config)


def _swscale_stored(frame: Any, box: video.Box | None, height: int, width: int, config: RgbFeatureSpec) -> np.ndarray:
    """``extract.resize: swscale_area``: the box (or the whole ``height`` x ``width`` frame) area-scaled by swscale."""
    if box is not None:
        x0, y0, x1, y1 = box
        height, width = y1 - y0, x1 - x0
    return _letterbox(video.scaled_rgb(frame, box, *_fitted(height, width, config)), config)


def _sample(frames: list[np.ndarray], config: RgbFeatureSpec, name: str) -> tuple[np.ndarray, int]:
    count = len(frames)
    if count == 0:
        raise video.VideoError("no_frames", f"{name}: no frames in the requested range")
    if count < config.min_frames:
        raise video.VideoError("too_short", f"{name}: {count} frames, fewer than min_frames={config.min_frames}")
    indices = sampling.uniform_indices(count, config.stored_frames)
    return np.stack([frames[i] for i in indices]), count


# Decoded, not yet converted frames kept while a clip's length is unknown: 32 MiB holds a whole
# WLASL100 clip (256x256: 340 frames) or a 288x192 one (400), the clips whose container counts are
# wrong, and 10 frames of 1080p. Past it the oldest frames are converted if the container's count
# would sample them, else dropped, so the decoder reuses their buffers: holding every frame of large
# clips cost more CPU in page faults (fresh memory per frame) than it saved (bench_extract.py, 1080p).
HOLD_BYTES = 32 * 1024**2


def decode_to_stored(
    path: str | os.PathLike[str],
    *,
    start: int = 0,
    stop: int | None = None,
    box: Box = None,
    config: RgbFeatureSpec,
    max_frames: int | None = None,
    num_frames: int | None = None,
    threads: int | None = None,
    hold_bytes: int | None = None,
    on_probe: Callable[[video.VideoInfo], None] | None = None,
) -> tuple[np.ndarray, int]:
    """Decode ``[start, stop)`` of a video once into ``(stored_frames, S, S, 3)`` uint8, plus the source count.

    ``stop`` past the end of the video is clamped to the decoded length (WLASL's
    frame_end defect); ``max_frames`` bounds work on untrusted uploads
    (``too_large``). Raises :class:`signflow.video.VideoError` with a reason.

    One decode pass, and only the stored frames are converted to RGB and resized:
    decoded frames are held unconverted (up to ``hold_bytes``, default :data:`HOLD_BYTES`)
    until the end of the clip gives its true length, then
    :func:`signflow.sampling.uniform_indices` picks the frames to convert. The container's
    count cannot be trusted for that (35 of the 199 wlasl-clips decode fewer frames than it
    says). Frames that leave the hold budget are converted if the container's count
    (``num_frames``, e.g. from the crop plan; else the container's, read when it opens) would
    sample them and dropped otherwise (every one converted when there is no count); only a clip both longer than the budget and miscounted is decoded a second
    time. The result never depends on ``num_frames``, ``threads`` (decoder threads, see
    :func:`signflow.video.iter_lazy_frames`) or the budget (tested). ``on_probe(info)`` sees the
    container's :class:`signflow.video.VideoInfo` before any frame is decoded (serving refuses an
    upload over its limits there, so an upload is opened once); what it raises ends the decode.
    """
    name = Path(path).name
    likely: set[int] | None = None  # the frames the container's count would sample

    def expect(count: int | None) -> None:
        nonlocal likely
        expected = (min(stop, count) if stop is not None else count) - start if count else 0
        if expected > 0:
            likely = set(sampling.uniform_indices(expected, config.stored_frames).tolist())

    expect(num_frames)

    def on_open(info: video.VideoInfo) -> None:
        if not num_frames:  # without a count from the caller, the container's own
            expect(info.num_frames)
        if on_probe is not None:
            on_probe(info)

    held: deque[tuple[int, Any, int]] = deque()  # (clip-relative index, unconverted frame, its bytes), oldest first
    held_bytes = 0
    budget = HOLD_BYTES if hold_bytes is None else hold_bytes
    small: dict[int, np.ndarray] = {}  # clip-relative index -> cropped and resized frame
    dropped = False
    count = 0
    # The container's probe only when it is used: extract's plans carry the count already.
    needs_probe = not num_frames or on_probe is not None
    for index, frame in video.iter_lazy_frames(path, start, stop, threads=threads,
                                               on_open=on_open if needs_probe else None):
        count += 1
        if max_frames is not None and count > max_frames:
            raise video.VideoError("too_large", f"{name}: more than {max_frames} frames")
        size = video.frame_bytes(frame)
        held.append((index - start, frame, size))
        held_bytes += size
        while held_bytes > budget and held:
            position, old, size = held.popleft()
            held_bytes -= size
            if likely is None or position in likely:
                small[position] = store_frame(old, box, config)
            else:
                dropped = True
    if count == 0:
        if start > 0:
            raise video.VideoError("no_frames", f"{name}: frame range starts at {start}, past the end of the video")
        raise video.VideoError("no_frames", f"{name}: no frames in the requested range")
    if count < config.min_frames:
        raise video.VideoError("too_short", f"{name}: {count} frames, fewer than min_frames={config.min_frames}")
    indices = sampling.uniform_indices(count, config.stored_frames)
    unconverted = {position: frame for position, frame, _ in held}
    missing: set[int] = set()
    for position in {int(i) for i in indices} - small.keys():
        if position in unconverted:
            small[position] = store_frame(unconverted[position], box, config)
        else:
            missing.add(position)
    del held, unconverted
    if missing:
        assert dropped
        log.debug("%s: %d frames decoded, a miscounted clip over the hold budget; decoding again for %d frames",
                  name, count, len(missing))
        for index, frame in video.iter_lazy_frames(path, start, stop, threads=threads):
            if index - start in missing:
                small[index - start] = store_frame(frame, box, config)
        if missing - small.keys():
            raise video.VideoError("corrupt", f"{name}: a second decode gave fewer than the first's {count} frames")
    return np.stack([small[int(i)] for i in indices]), count


def frames_to_stored(
    frames: np.ndarray | Iterable[np.ndarray], box: Box, config: RgbFeatureSpec
) -> tuple[np.ndarray, int]:
    """The same as :func:`decode_to_stored` for frames already in memory (RGB uint8 ``(H, W, 3)`` each)."""
    small = [resize_frame(np.asarray(frame, dtype=np.uint8), box, config) for frame in frames]
    return _sample(small, config, "frames")
