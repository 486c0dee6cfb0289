"""The ``wlasl`` source: download WLASL videos over HTTP(S) into a resumable cache.

WLASL is a list of URLs on a dozen third-party hosts, 10-40 % of them dead, some
YouTube (one long video holding many signs), some Flash ``.swf``. So:

* **concurrent but polite**: a thread pool (``concurrency``) with at most
  ``per_host_concurrency`` requests per host at a time, a timeout on every
  request, retries with exponential backoff on timeouts, connection errors,
  truncated bodies, 429 and 5xx (never on 404: a dead link stays dead);
* **resumable**: every finished video is verified (it must decode) and then
  renamed from a ``.part`` file into ``<cache>/files/`` *before* a small
  ``<cache>/done/<video_id>.json`` marker is written atomically. Only a file with
  a matching marker counts as complete, so a partial download can never be
  mistaken for a finished one; a repeated run re-uses it without a request;
* **never keeps truncated files**: a body shorter than its ``Content-Length`` is
  discarded and retried; bodies above ``max_bytes`` are refused;
* **YouTube** entries go through ``yt-dlp`` when it is installed (the optional
  ``youtube`` extra), then are trimmed to ``frame_start..frame_end`` exactly like
  the official WLASL preprocessing (see :func:`trim_video`); without ``yt-dlp``
  they are ``skipped`` with that reason;
* **.swf** sources are converted to mp4 with ffmpeg, or reported ``corrupt``
  with ffmpeg's reason when it cannot read them.

Every video ends as one ``status.csv`` row; one bad video never stops the run.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tenacity import RetryCallState, RetryError, Retrying, retry_if_exception, stop_after_attempt
from tqdm import tqdm

from signflow import atomic, video
from signflow.config import WlaslSourceParams
from signflow.index import (
    GlossEntry,
    Instance,
    cap_videos,
    load_index_skipping,
    load_nslt,
    select_first_glosses,
    select_nslt,
)
from signflow.sources import VideoStatus

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi", ".flv", ".swf")
_YOUTUBE_HOSTS = ("youtube.com", "www.youtube.com", "m.youtube.com", "youtu.be")
_CHUNK = 1 << 16


# --------------------------------------------------------------------------- trim (official WLASL semantics)


def trim_range(frame_start: int, frame_end: int) -> tuple[int, int | None]:
    """WLASL's 1-based inclusive ``frame_start..frame_end`` as a 0-based half-open range.

    ``frame_end == -1`` means "to the end". The official ``preprocess.py`` slices
    ``frames[start - 1 : end - 1 + 1]``, which for ``-1`` becomes ``frames[0:-1]``
    and silently drops the last frame (98 source frames -> 97). That is an
    artefact of Python's negative indexing, not a documented choice, and it
    contradicts the index's own definition of ``-1``; we keep every frame.
    """
    if frame_start < 1:
        raise ValueError(f"frame_start is 1-based, got {frame_start}")
    if frame_end != -1 and frame_end < frame_start:
        raise ValueError(f"frame_end ({frame_end}) must be -1 or >= frame_start ({frame_start})")
    return frame_start - 1, None if frame_end == -1 else frame_end


def trim_video(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], frame_start: int, frame_end: int
) -> int:
    """Write frames ``frame_start..frame_end`` (1-based, inclusive; -1 = end) of ``src`` to ``dst``.

    Frame-accurate: decodes sequentially like the official OpenCV loop (no
    key-frame seeking). The output keeps the source frame rate (the official
    tool always wrote 25 fps, which changes the speed of 29.97 fps sources) and is
    written atomically with libx264. Returns the number of frames written; a
    range that starts past the end of the video is a ``no_frames`` VideoError.
    """
    start, stop = trim_range(frame_start, frame_end)
    info = video.probe(src)
    fps = info.fps if info.fps > 0 else 25.0
    frames = (frame for _, frame in video.iter_frames(src, start, stop))
    try:
        count = video.write_video(dst, frames, fps, deterministic=True)  # same bytes every run: DVC hashes stay put
    except ValueError as error:  # write_video: no frames given
        raise video.VideoError(
            "no_frames", f"{Path(src).name}: frames {frame_start}..{frame_end} are past the end of the video"
        ) from error
    if stop is not None and count < stop - start:
        log.warning(
            "%s: frame_end %d is past the end of the video; trimmed %d frames", Path(src).name, frame_end, count
        )
    return count


# --------------------------------------------------------------------------- helpers


def is_youtube(url: str) -> bool:
    host = (urlparse(url).hostname or "").lower()
    return host in _YOUTUBE_HOSTS or host.endswith(".youtube.com")


def youtube_id(url: str) -> str | None:
    """The 11-character YouTube id (``watch?v=``, ``youtu.be/``, ``embed/``)."""
    match = re.search(r"(?:v=|youtu\.be/|embed/|shorts/)([A-Za-z0-9_-]{11})", url)
    return match.group(1) if match else None


def extension_of(url: str) -> str:
    suffix = Path(urlparse(url).path).suffix.lower()
    return suffix if suffix in VIDEO_EXTENSIONS else ".mp4"


def yt_dlp_available() -> bool:
    try:
        import yt_dlp  # noqa: F401
    except ImportError:
        return False
    return True


class _Failure(Exception):
    """A video-level failure that becomes a status row (never stops the run)."""

    def __init__(self, status: str, reason: str, *, retry: bool = False, retry_after: str | None = None):
        super().__init__(reason)
        self.status, self.reason, self.retry, self.retry_after = status, reason, retry, retry_after


@dataclass
class _Result:
    status: str
    reason: str
    path: Path | None = None
    bytes: int = 0
    trimmed: bool = False
    frames: int | None = None


class _Downloader:
    """Shared state of one run: sessions, per-host limits, the cache."""

    def __init__(self, params: WlaslSourceParams, cache_dir: Path):
        self.params = params
        self.cache = cache_dir
        for sub in ("files", "done", "partial", "youtube"):
            (cache_dir / sub).mkdir(parents=True, exist_ok=True)
        # Leftovers of killed runs; recent ones may belong to a concurrent run on the same cache.
        for leftover in (cache_dir / "partial").iterdir():
            if time.time() - leftover.stat().st_mtime > 3600:
                leftover.unlink(missing_ok=True)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._host_limits: dict[str, threading.BoundedSemaphore] = {}
        self._youtube_locks: dict[str, threading.Lock] = {}
        self.requests_made = 0

    # ---- plumbing

    def _session(self) -> Any:
        import requests

        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = self.params.user_agent
            # Raw bytes only: Content-Length then counts exactly what we store (truncation check).
            session.headers["Accept-Encoding"] = "identity"
            self._local.session = session
        return session

    def _host_limit(self, url: str) -> threading.BoundedSemaphore:
        host = (urlparse(url).hostname or "").lower()
        with self._lock:
            if host not in self._host_limits:
                self._host_limits[host] = threading.BoundedSemaphore(self.params.per_host_concurrency)
            return self._host_limits[host]

    def _youtube_lock(self, yt_id: str) -> threading.Lock:
        with self._lock:
            return self._youtube_locks.setdefault(yt_id, threading.Lock())

    def _wait(self, state: RetryCallState) -> float:
        """Exponential backoff with jitter (no synchronized retries), at least the server's Retry-After."""
        delay = self.params.backoff_s * (2 ** (state.attempt_number - 1))
        retry_after = getattr(state.outcome.exception() if state.outcome else None, "retry_after", None)
        if retry_after and retry_after.isdigit():
            delay = max(delay, min(float(retry_after), 60.0))  # honour the server, within reason
        return delay * (1.0 + 0.1 * random.random())

    # ---- the cache

    def _marker(self, video_id: str) -> Path:
        return self.cache / "done" / f"{video_id}.json"

    def cached(self, inst: Instance) -> _Result | None:
        """A finished video from an earlier run, if its marker matches this instance exactly."""
        marker = self._marker(inst.video_id)
        if not marker.is_file():
            return None
        try:
            meta = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        path = self.cache / "files" / meta.get("file", "")
        same_request = (
            meta.get("url") == inst.url
            and meta.get("frame_start") == inst.frame_start
            and meta.get("frame_end") == inst.frame_end
        )
        if not same_request or not path.is_file() or path.stat().st_size != meta.get("bytes"):
            return None
        return _Result("ok", "cached", path, meta["bytes"], meta.get("trimmed", False), meta.get("frames"))

    def _finish(self, inst: Instance, tmp: Path, ext: str, *, trimmed: bool, frames: int | None) -> _Result:
        """Move a verified file into the cache, then write its marker (in that order)."""
        final = self.cache / "files" / f"{inst.video_id}{ext}"
        os.replace(tmp, final)
        size = final.stat().st_size
        meta = {
            "video_id": inst.video_id,
            "url": inst.url,
            "frame_start": inst.frame_start,
            "frame_end": inst.frame_end,
            "file": final.name,
            "bytes": size,
            "trimmed": trimmed,
            "frames": frames,
        }
        atomic.write_json(self._marker(inst.video_id), meta)
        return _Result("ok", "", final, size, trimmed, frames)

    def _part(self, name: str, suffix: str = ".part") -> Path:
        # Unique per attempt, so two runs sharing a cache never write the same temporary.
        return self.cache / "partial" / f"{name}.{uuid.uuid4().hex[:8]}{suffix}"

    # ---- HTTP

    def fetch(self, url: str, dest: Path) -> int:
        """GET ``url`` into ``dest`` with retries; return bytes; raise :class:`_Failure`."""
        import requests

        attempts = self.params.retries + 1

        def attempt() -> int:
            try:
                with self._host_limit(url):
                    self._count_request()
                    return self._fetch_once(url, dest)
            except _Failure:
                dest.unlink(missing_ok=True)  # never keep a partial body
                raise
            except requests.Timeout as error:
                dest.unlink(missing_ok=True)
                timeout = f"timeout after {self.params.timeout_s}s ({type(error).__name__})"
                raise _Failure("http_error", timeout, retry=True) from error
            except requests.RequestException as error:
                dest.unlink(missing_ok=True)
                reason = f"connection error ({type(error).__name__}: {error})"
                raise _Failure("http_error", reason, retry=True) from error

        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=self._wait,
            retry=retry_if_exception(lambda error: isinstance(error, _Failure) and error.retry),
            before_sleep=lambda state: log.debug(
                "attempt %d/%d for %s failed: %s", state.attempt_number, attempts, url, state.outcome.exception()
            ),
        )
        try:
            return retrying(attempt)
        except RetryError as error:
            last = error.last_attempt.exception()
            assert isinstance(last, _Failure)
            raise _Failure(last.status, f"{last.reason}; gave up after {attempts} attempts") from None

    def _count_request(self) -> None:
        with self._lock:
            self.requests_made += 1

    def _fetch_once(self, url: str, dest: Path) -> int:
        params = self.params
        response = self._session().get(url, stream=True, timeout=(params.timeout_s, params.timeout_s))
        with response:
            code = response.status_code
            if code in (404, 410):
                raise _Failure("missing", f"HTTP {code}")
            if code == 429 or code >= 500:
                raise _Failure("http_error", f"HTTP {code}", retry=True, retry_after=response.headers.get("Retry-After"))
            if code != 200:
                raise _Failure("http_error", f"HTTP {code}")
            expected_text = response.headers.get("Content-Length")
            expected = int(expected_text) if expected_text and expected_text.isdigit() else None
            if expected is not None and expected > params.max_bytes:
                raise _Failure("skipped", f"too large ({expected} bytes > data.wlasl.max_bytes {params.max_bytes})")
            received = 0
            try:
                with open(dest, "wb") as handle:
                    # decode_content=False: Content-Length counts the bytes on the wire.
                    for chunk in response.raw.stream(_CHUNK, decode_content=False):
                        received += len(chunk)
                        if received > params.max_bytes:
                            raise _Failure(
                                "skipped", f"too large (over data.wlasl.max_bytes {params.max_bytes} bytes)"
                            )
                        handle.write(chunk)
            except _Failure:
                raise
            except Exception as error:  # urllib3 ProtocolError/ReadTimeoutError mid-body: a truncated transfer
                from requests import Timeout

                if "timed out" in str(error).lower():
                    raise Timeout(str(error)) from None
                raise _Failure(
                    "http_error",
                    f"truncated body: got {received} of {expected if expected is not None else '?'} bytes "
                    f"({type(error).__name__})",
                    retry=True,
                ) from None
            if expected is not None and received != expected:
                raise _Failure("http_error", f"truncated body: got {received} of {expected} bytes", retry=True)
            if received == 0:
                raise _Failure("corrupt", "empty body (0 bytes)")
            return received

    # ---- one instance

    def obtain(self, inst: Instance) -> _Result:
        """Download (or re-use), convert/trim and verify one instance; never raises for a bad video."""
        url = inst.url or ""
        if not url:
            return _Result("missing", "no url in the index")
        cached = self.cached(inst)
        if cached is not None:
            return cached
        try:
            if is_youtube(url):
                return self._obtain_youtube(inst, url)
            return self._obtain_http(inst, url)
        except _Failure as failure:
            return _Result(failure.status, failure.reason)
        except video.VideoError as error:
            # The detail names a temporary file; keep the part that says what is wrong.
            detail = error.detail.split(": ", 1)[-1].split(" ([")[0].split(" (")[0]
            return _Result("corrupt", f"{error.reason}: {detail}")
        except OSError as error:  # disk full, permissions: this video fails, the run goes on
            return _Result("http_error", f"I/O error ({error})")

    def _obtain_http(self, inst: Instance, url: str) -> _Result:
        scheme = urlparse(url).scheme.lower()
        if scheme not in ("http", "https"):
            return _Result("skipped", f"unsupported url scheme {scheme!r}")
        ext = extension_of(url)
        part = self._part(inst.video_id)
        try:
            self.fetch(url, part)
            if ext == ".swf":
                converted = self._part(inst.video_id, ".mp4")
                _convert_swf(part, converted)
                part.unlink(missing_ok=True)
                part, ext = converted, ".mp4"
            # A file only counts when it really decodes (HTML error pages come back as 200s).
            _verify(part)
            return self._finish(inst, part, ext, trimmed=False, frames=None)
        finally:
            part.unlink(missing_ok=True)

    def _obtain_youtube(self, inst: Instance, url: str) -> _Result:
        if not self.params.youtube:
            return _Result("skipped", "youtube disabled (data.wlasl.youtube: false)")
        if not yt_dlp_available():
            return _Result("skipped", "yt-dlp not installed (pip install 'signflow[youtube]')")
        yt_id = youtube_id(url)
        if yt_id is None:
            return _Result("missing", f"cannot find a YouTube id in {url!r}")
        # One YouTube video holds many signs: fetch it once, trim it per instance.
        with self._youtube_lock(yt_id):
            source = self._youtube_source(yt_id, url)
        part = self._part(inst.video_id, ".mp4")
        try:
            frames = trim_video(source, part, inst.frame_start, inst.frame_end)
            _verify(part)
            return self._finish(inst, part, ".mp4", trimmed=True, frames=frames)
        finally:
            part.unlink(missing_ok=True)

    def _youtube_source(self, yt_id: str, url: str) -> Path:
        done = self.cache / "youtube" / f"{yt_id}.mp4"
        if done.is_file() and done.stat().st_size > 0:
            return done
        import yt_dlp

        tmp_base = self.cache / "partial" / f"yt-{yt_id}-{uuid.uuid4().hex[:8]}"
        options = {
            "format": "mp4/bestvideo[ext=mp4]/best",
            "outtmpl": f"{tmp_base}.%(ext)s",
            "quiet": True,
            "no_warnings": True,
            "noprogress": True,
            "socket_timeout": self.params.timeout_s,
            "retries": self.params.retries,
            "max_filesize": self.params.max_bytes,
            "http_headers": {"User-Agent": self.params.user_agent},
        }
        try:
            with self._host_limit(url):
                self._count_request()
                with yt_dlp.YoutubeDL(options) as ydl:
                    ydl.download([url])
            produced = sorted(tmp_base.parent.glob(tmp_base.name + ".*"))
            produced = [p for p in produced if not p.name.endswith(".part")]
            if not produced:
                raise _Failure("missing", "yt-dlp produced no file (unavailable or too large)")
            _verify(produced[0])
            os.replace(produced[0], done)
        except yt_dlp.utils.DownloadError as error:
            message = str(error).splitlines()[0]
            status = "missing" if re.search(r"unavailable|private|removed|not exist", message, re.I) else "http_error"
            raise _Failure(status, f"yt-dlp: {message}") from None
        finally:
            for leftover in tmp_base.parent.glob(tmp_base.name + ".*"):
                leftover.unlink(missing_ok=True)
        return done


def _verify(path: Path) -> None:
    """Raise VideoError unless ``path`` has a video stream whose first frame decodes."""
    video.probe(path)
    for _ in video.iter_frames(path, 0, 1):
        return
    raise video.VideoError("no_frames", f"{path.name}: no decodable frames")


def _convert_swf(src: Path, dst: Path) -> None:
    """Flash video (aslpro) -> mp4 with the ffmpeg CLI; a clear ``_Failure`` when it cannot."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise _Failure("skipped", ".swf source needs ffmpeg, which is not installed")
    cmd = [ffmpeg, "-nostdin", "-v", "error", "-y", "-i", str(src), "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p"]
    cmd += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-f", "mp4", str(dst)]
    try:
        completed = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise _Failure("corrupt", ".swf conversion timed out") from None
    if completed.returncode != 0 or not dst.is_file() or dst.stat().st_size == 0:
        detail = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        dst.unlink(missing_ok=True)
        raise _Failure("corrupt", f".swf conversion failed: {detail}")


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst)


def select(params: WlaslSourceParams, entries: list[GlossEntry], base_dir: Path | None = None) -> list[GlossEntry]:
    """The subset to download: ``subset_file`` (nslt_K.json) or the first ``subset`` glosses, then ``max_videos``."""
    if params.subset_file:
        path = Path(params.subset_file)
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        entries = select_nslt(entries, load_nslt(path))
    else:
        entries = select_first_glosses(entries, params.subset)
    return cap_videos(entries, params.max_videos)


def download(
    params: WlaslSourceParams, out_dir: str | Path, *, cache_dir: str | Path | None = None
) -> tuple[list[GlossEntry], list[VideoStatus]]:
    """Download the selected WLASL videos; fill ``out_dir/videos`` and return index entries + statuses.

    The index entries keep every selected instance; the ones obtained get
    ``file``. Trimmed YouTube instances get ``frame_start=1, frame_end=-1``
    (the file now holds exactly the sign) and keep the original range in
    ``source_frame_start``/``source_frame_end``.
    """
    out_dir = Path(out_dir)
    cache = Path(cache_dir) if cache_dir is not None else out_dir.parent / ".download-cache"
    entries, problems = load_index_skipping(params.index, timeout_s=params.timeout_s)
    entries = select(params, entries)
    downloader = _Downloader(params, cache)
    jobs = [(g, i, inst) for g, entry in enumerate(entries) for i, inst in enumerate(entry.instances)]
    results: dict[tuple[int, int], _Result] = {}
    with ThreadPoolExecutor(max_workers=params.concurrency, thread_name_prefix="wlasl") as pool:
        futures = {pool.submit(downloader.obtain, inst): (g, i) for g, i, inst in jobs}
        for future in tqdm(as_completed(futures), total=len(futures), desc="wlasl", unit="video", disable=None):
            results[futures[future]] = future.result()

    rows = [VideoStatus(p.video_id, p.gloss, "skipped", f"index: {p.reason}", 0, "") for p in problems]
    new_entries: list[GlossEntry] = []
    for g, entry in enumerate(entries):
        instances: list[Instance] = []
        for i, inst in enumerate(entry.instances):
            result = results[(g, i)]
            update: dict[str, Any] = {}
            if result.status == "ok" and result.path is not None:
                rel = f"videos/{inst.video_id}{result.path.suffix}"
                _link_or_copy(result.path, out_dir / rel)
                update["file"] = rel
                if result.trimmed:
                    update.update(
                        frame_start=1,
                        frame_end=-1,
                        source_frame_start=inst.frame_start,
                        source_frame_end=inst.frame_end,
                    )
            instances.append(inst.model_copy(update=update))
            reason = "" if result.reason == "cached" else result.reason
            rows.append(VideoStatus(inst.video_id, entry.gloss, result.status, reason, result.bytes, inst.url or ""))
        new_entries.append(entry.model_copy(update={"instances": instances}))
    log.info("wlasl: %d HTTP/yt-dlp requests this run (cache: %s)", downloader.requests_made, cache)
    return new_entries, rows
