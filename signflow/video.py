"""Video I/O on PyAV (FFmpeg's libraries): probe, decode, encode.

One decoder for the whole project (extract, serving, landmarks, benchmarks), so a
clip decodes to the same pixels everywhere. Frames are RGB ``uint8`` arrays of
shape ``(H, W, 3)``; frame indices are 0-based here (WLASL's 1-based, inclusive
``frame_start``/``frame_end`` are converted in :mod:`signflow.crop`).
Every failure is a :class:`VideoError` with a short machine-readable ``reason``.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from signflow import atomic

log = logging.getLogger(__name__)

# Reasons a video can be rejected; they end up in skipped lists and HTTP 4xx bodies.
REASONS = ("missing", "empty", "not_video", "corrupt", "no_frames", "too_short", "too_large", "too_long",
           "unsupported_codec", "cancelled")
# FFmpeg demuxers of single still images: a PNG or JPEG renamed .mp4 opens as a one-frame "video".
IMAGE_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "webp_pipe", "tiff_pipe", "gif_pipe", "qoi_pipe",
                 "ppm_pipe", "pgm_pipe", "svg_pipe", "jpegls_pipe", "j2k_pipe", "dds_pipe", "psd_pipe")


class VideoError(Exception):
    """A video that cannot be used, with a ``reason`` from :data:`REASONS`."""

    def __init__(self, reason: str, detail: str):
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class DecodeLimits:
    """Stops a decode of untrusted input early: the caller gave up (``cancel``), too many frames, too long.

    Applied with :func:`decode_limits` around a decode (serving); checked once per decoded frame by
    :func:`iter_frames`, so a request that timed out stops burning CPU within a frame, and a
    stream whose container lies about its length (raw H.264, no duration) is cut at the limit
    while decoding, not after.
    """

    cancel: threading.Event | None = None
    max_frames: int | None = None
    max_duration_s: float | None = None

    def check(self, name: str, index: int, seconds: float | None) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise VideoError("cancelled", f"{name}: decoding stopped after {index + 1} frames (request ended)")
        if self.max_frames is not None and index + 1 > self.max_frames:
            raise VideoError("too_large", f"{name}: more than {self.max_frames} frames")
        if self.max_duration_s is not None and seconds is not None and seconds > self.max_duration_s:
            raise VideoError("too_long", f"{name}: longer than {self.max_duration_s:g} s")


_LIMITS: contextvars.ContextVar[DecodeLimits | None] = contextvars.ContextVar("decode_limits", default=None)


@contextlib.contextmanager
def decode_limits(limits: DecodeLimits) -> Iterator[None]:
    """Apply ``limits`` to every decode started in this context (``asyncio.to_thread`` carries it
    into the worker thread)."""
    token = _LIMITS.set(limits)
    try:
        yield
    finally:
        _LIMITS.reset(token)


def ffmpeg_message(error: BaseException) -> str:
    """FFmpeg's message without its errno and the server's file name (both mean nothing to a client)."""
    text = getattr(error, "strerror", None) or str(error)
    return str(text).strip()


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    num_frames: int  # container's count, or an estimate from the duration; 0 when unknown
    duration_s: float
    codec: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _open(path: str | os.PathLike[str]) -> av.container.InputContainer:
    path = Path(path)
    if not path.exists():
        raise VideoError("missing", f"{path} does not exist")
    if path.stat().st_size == 0:
        raise VideoError("empty", f"{path} is a zero-byte file")
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except av.error.InvalidDataError as error:
        raise VideoError("not_video", f"{path.name}: not a readable video container ({ffmpeg_message(error)})") from None
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise VideoError("corrupt", f"{path.name}: cannot open ({ffmpeg_message(error)})") from None
    if container.format.name in IMAGE_FORMATS:
        kind = container.format.name.removesuffix("_pipe")
        container.close()
        raise VideoError("not_video", f"{path.name}: a still image ({kind}), not a video")
    if not container.streams.video:
        container.close()
        raise VideoError("not_video", f"{path.name}: no video stream")
    if container.streams.video[0].codec_context is None:
        # The container parses but FFmpeg has no decoder for the stream's codec tag.
        container.close()
        raise VideoError("unsupported_codec", f"{path.name}: no decoder for this video codec")
    return container


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Read stream metadata without decoding."""
    container = _open(path)
    try:
        return _info(container, Path(path).name)
    finally:
        container.close()


def _info(container: av.container.InputContainer, name: str) -> VideoInfo:
    stream = container.streams.video[0]
    codec = stream.codec_context.name if stream.codec_context else "unknown"
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    duration_s = 0.0
    if stream.duration is not None and stream.time_base is not None:
        duration_s = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration_s = container.duration / av.time_base
    num_frames = int(stream.frames or 0)
    if num_frames == 0 and fps and duration_s:
        num_frames = int(round(duration_s * fps))
    width = int(stream.codec_context.width or 0)
    height = int(stream.codec_context.height or 0)
    if width <= 0 or height <= 0:
        raise VideoError("corrupt", f"{name}: video stream has no frame size")
    return VideoInfo(width, height, fps, num_frames, duration_s, codec)


def iter_lazy_frames(
    path: str | os.PathLike[str],
    start: int = 0,
    stop: int | None = None,
    *,
    threads: int | None = None,
    on_open: Callable[[VideoInfo], None] | None = None,
) -> Iterator[tuple[int, av.VideoFrame]]:
    """Yield ``(index, frame)`` for frames ``start <= index < stop`` (0-based), decoded but not converted.

    The frames are PyAV's own (YUV as stored); :func:`to_rgb` converts one. A caller
    that keeps only some frames converts only those, and may hold the rest unconverted
    until it knows which it needs (the true length of a clip is known only at its end:
    container counts are often wrong in WLASL files).
    Decodes sequentially from the first frame (frame-accurate, unlike container
    seeks, which land on key frames and disagree between demuxers). A decode
    error after at least the requested frames were produced is ignored; one
    before is a ``corrupt`` :class:`VideoError`. :class:`DecodeLimits` in effect
    are checked once per decoded frame.

    ``threads``: decoder threads; ``None`` lets FFmpeg choose (frame + slice threads,
    one per core: the lowest latency for one clip on an idle machine). Batch
    extraction with one process per core passes 1 (processes x threads = cores): extra
    threads per process only add thread start-up per clip and contend for the same cores.
    The decoded pixels do not depend on it. ``on_open(info)`` is called with the container's :func:`probe` once it is open,
    before the first frame is decoded (to read the container's frame count, or to refuse an upload
    over the limits, without opening the file twice); what it raises ends the decode.
    """
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    container = _open(path)
    index = -1
    limits = _LIMITS.get()
    name = Path(path).name
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if threads is not None:
            stream.codec_context.thread_count = max(1, int(threads))
        if on_open is not None:
            on_open(_info(container, name))
        try:
            for frame in container.decode(stream):
                index += 1
                if limits is not None:
                    limits.check(name, index, frame.time)
                if index < start:
                    continue
                if stop is not None and index >= stop:
                    break
                yield index, frame
        except av.error.DecoderNotFoundError as error:
            raise VideoError("unsupported_codec", f"{name}: {ffmpeg_message(error)}") from None
        except (av.error.FFmpegError, ValueError) as error:
            if index < start or stop is None or index + 1 < stop:
                raise VideoError(
                    "corrupt", f"{name}: decoding failed after {index + 1} frames ({ffmpeg_message(error)})"
                ) from None
            log.debug("ignoring decode error past the requested range in %s: %s", path, error)
    finally:
        container.close()


_REFORMATTERS = threading.local()
# Planar 8-bit 4:2:0 layouts: one chroma sample per 2x2 block of pixels, and swscale converts each
# pixel of an even-sized frame from its own luma and its block's chroma, so a box cut from the planes
# on even coordinates converts to exactly the pixels it has in the whole frame's conversion (tested
# on every stored frame of both real clip sets): only the box is converted. Odd-sized frames take
# another swscale path (chroma interpolated), so they are converted whole.
_CROPPABLE_FORMATS = ("yuv420p", "yuvj420p")


def _croppable(frame: av.VideoFrame) -> bool:
    return frame.format.name in _CROPPABLE_FORMATS and frame.width % 2 == 0 and frame.height % 2 == 0


_FRAME_BYTES: dict[tuple[int, int, str], int] = {}

Box = tuple[int, int, int, int]


def clip_box(box: Iterable[float] | None, width: int, height: int) -> Box | None:
    """``box`` (x0, y0, x1, y1) as integer pixels inside a ``width`` x ``height`` frame; None = the whole frame.

    Boxes are planned on the probed size: they are clipped again in case the decoded size differs,
    and one that leaves nothing (or covers everything) means no crop.
    """
    if box is None:
        return None
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, x1 = max(0, min(x0, width - 1)), max(1, min(x1, width))
    y0, y1 = max(0, min(y0, height - 1)), max(1, min(y1, height))
    if x1 <= x0 or y1 <= y0 or (x0, y0, x1, y1) == (0, 0, width, height):
        return None
    return x0, y0, x1, y1


def _cut_planes(frame: av.VideoFrame, box: Box) -> tuple[av.VideoFrame, int, int]:
    """A new 4:2:0 frame holding ``box`` widened to even coordinates, and the box's offset in it."""
    x0, y0, x1, y1 = box
    even_x0, even_y0 = x0 - x0 % 2, y0 - y0 % 2
    even_x1 = min(frame.width, x1 + (x1 - even_x0) % 2)
    even_y1 = min(frame.height, y1 + (y1 - even_y0) % 2)
    cut = av.VideoFrame(even_x1 - even_x0, even_y1 - even_y0, frame.format.name)
    for plane, (source, target) in enumerate(zip(frame.planes, cut.planes, strict=True)):
        shift = 0 if plane == 0 else 1
        rows = np.frombuffer(source, np.uint8).reshape(source.height, source.line_size)
        out = np.frombuffer(target, np.uint8).reshape(target.height, target.line_size)
        top, left = even_y0 >> shift, even_x0 >> shift
        out[:, : target.width] = rows[top : top + target.height, left : left + target.width]
    cut.colorspace, cut.color_range = frame.colorspace, frame.color_range
    return cut, x0 - even_x0, y0 - even_y0


def _reformatter() -> VideoReformatter:
    """This thread's swscale context holder (see :func:`to_rgb`)."""
    reformatter = getattr(_REFORMATTERS, "reformatter", None)
    if reformatter is None:
        reformatter = _REFORMATTERS.reformatter = VideoReformatter()
    return reformatter


def to_rgb(frame: av.VideoFrame, box: Box | None = None) -> np.ndarray:
    """One decoded frame (or its ``box``, from :func:`clip_box`) as an RGB ``uint8`` ``(H, W, 3)`` array.

    PyAV's own conversion, same pixels. One swscale context per thread, reused across frames and
    clips: ``frame.to_ndarray(format=...)`` builds a new one per frame, which costs more than
    decoding a small frame (5x slower extract on 128x96 clips). Single-threaded swscale: its default
    (a thread per core, started per context) costs 4-6x more than the conversion itself on
    WLASL-sized frames and gives the same pixels (``benchmarks/bench_extract.py`` profile,
    docs/benchmarks.md). A ``box`` of a 4:2:0 frame is cut from the planes first, so only its
    pixels are converted (a signer's box of a 1080p frame is a fraction of it); other layouts are
    converted whole and sliced.
    """
    reformatter = _reformatter()
    if box is None:
        return reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()
    x0, y0, x1, y1 = box
    if not _croppable(frame):
        return reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()[y0:y1, x0:x1]
    cut, left, top = _cut_planes(frame, box)
    rgb = reformatter.reformat(cut, format="rgb24", threads=1).to_ndarray()
    return rgb[top : top + y1 - y0, left : left + x1 - x0]


def scaled_rgb(frame: av.VideoFrame | np.ndarray, box: Box | None, width: int, height: int) -> np.ndarray:
    """A decoded frame's ``box`` (or an RGB ``(H, W, 3)`` array's) as ``width`` x ``height`` RGB, scaled by
    swscale's area filter (``extract.resize: swscale_area``).

    From an even-sized 4:2:0 frame, one swscale pass converts and scales the planes cut to the box
    rounded out to even coordinates (the chroma grid); other frames and arrays are converted (or
    taken) as RGB, sliced to the box, then scaled.
    """
    reformatter = _reformatter()
    if isinstance(frame, np.ndarray) or not _croppable(frame):
        rgb = frame if isinstance(frame, np.ndarray) else to_rgb(frame)
        if box is not None:
            x0, y0, x1, y1 = box
            rgb = rgb[y0:y1, x0:x1]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    elif box is not None:
        frame = _cut_planes(frame, box)[0]
    return reformatter.reformat(frame, width=width, height=height, format="rgb24", interpolation="AREA",
                                threads=1).to_ndarray()


def frame_bytes(frame: av.VideoFrame) -> int:
    """Bytes a decoded (unconverted) frame holds: what keeping it for later costs."""
    key = (frame.width, frame.height, frame.format.name)
    size = _FRAME_BYTES.get(key)
    if size is None:
        if len(_FRAME_BYTES) > 256:  # uploads of many sizes: keep the table small
            _FRAME_BYTES.clear()
        size = _FRAME_BYTES[key] = sum(plane.buffer_size for plane in frame.planes)
    return size


def iter_frames(
    path: str | os.PathLike[str],
    start: int = 0,
    stop: int | None = None,
    *,
    want: Callable[[int], bool] | None = None,
    threads: int | None = None,
) -> Iterator[tuple[int, np.ndarray | None]]:
    """Yield ``(index, rgb_frame)`` for frames ``start <= index < stop`` (0-based); see :func:`iter_lazy_frames`.

    ``want(index)`` False yields ``(index, None)``: the frame is decoded (codecs
    need every frame) but not converted to RGB, which is most of the per-frame
    cost on large videos when only a sample of the frames is kept.
    """
    for index, frame in iter_lazy_frames(path, start, stop, threads=threads):
        if want is not None and not want(index):
            yield index, None
            continue
        yield index, to_rgb(frame)


def read_frames(
    path: str | os.PathLike[str], start: int = 0, stop: int | None = None, *, max_frames: int | None = None
) -> np.ndarray:
    """Decode frames ``[start, stop)`` into one ``(T, H, W, 3)`` uint8 array.

    ``max_frames`` bounds memory for untrusted input (serving): more frames than
    that is a ``too_large`` error rather than an out-of-memory kill.
    """
    frames: list[np.ndarray] = []
    for _, frame in iter_frames(path, start, stop):
        frames.append(frame)
        if max_frames is not None and len(frames) > max_frames:
            raise VideoError("too_large", f"{Path(path).name}: more than {max_frames} frames")
    if not frames:
        raise VideoError("no_frames", f"{Path(path).name}: no frames in range [{start}, {stop})")
    return np.stack(frames)


def write_video(
    path: str | os.PathLike[str],
    frames: Iterable[np.ndarray],
    fps: float,
    *,
    codec: str = "libx264",
    crf: int = 18,
    lossless: bool = False,
    deterministic: bool = False,
) -> int:
    """Encode RGB frames to ``path`` atomically; returns the number of frames written.

    ``deterministic=True`` turns off x264's macroblock-tree rate control, the one
    part of this libx264 build that gives different bytes run to run (measured:
    2-4 distinct outputs in 12 encodes of the same frames, even single-threaded).

    ``lossless=True`` uses ``libx264rgb`` at crf 0, so decoding gives back the
    exact pixels (test fixtures assert on them, as pytorchvideo's do).
    """
    rate = Fraction(fps).limit_denominator(1001)
    suffix = Path(path).suffix or ".mp4"
    count = 0
    with atomic.atomic_path(path) as tmp:
        container = av.open(str(tmp), mode="w", format=_format_for(suffix))
        try:
            stream = None
            for frame_array in frames:
                frame_array = np.ascontiguousarray(frame_array, dtype=np.uint8)
                if stream is None:
                    height, width = frame_array.shape[:2]
                    if lossless:
                        stream = container.add_stream("libx264rgb", rate=rate)
                        stream.pix_fmt = "rgb24"
                        stream.options = {"crf": "0", "preset": "ultrafast"}
                    else:
                        stream = container.add_stream(codec, rate=rate)
                        stream.pix_fmt = "yuv420p"
                        if codec in ("libx264", "libx265"):
                            stream.options = {"crf": str(crf), "preset": "veryfast"}
                        if codec == "libx264" and deterministic:
                            stream.options = {**stream.options, "x264-params": "no-mbtree=1"}
                    # yuv420p needs even sizes; rgb24 does not.
                    stream.width = width if lossless else width - width % 2
                    stream.height = height if lossless else height - height % 2
                if not lossless:
                    frame_array = frame_array[: stream.height, : stream.width]
                video_frame = av.VideoFrame.from_ndarray(frame_array, format="rgb24")
                for packet in stream.encode(video_frame):
                    container.mux(packet)
                count += 1
            if stream is None:
                raise ValueError("write_video: no frames given")
            for packet in stream.encode():
                container.mux(packet)
        finally:
            container.close()
    return count


def _format_for(suffix: str) -> str:
    return {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".avi": "avi", ".webm": "webm", ".mkv": "matroska"}.get(
        suffix.lower(), "mp4"
    )
