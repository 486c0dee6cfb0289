"""The ``wlasl`` downloader against a real HTTP server on loopback.

The server serves fixture videos under the URL *paths* of real entries of
``WLASL_v0.3_first100.json`` (host rewritten to 127.0.0.1), plus the failure
modes WLASL really has: 404s, a server that hangs, a truncated body, a 503
that recovers, an HTML page instead of a video, an oversized file, a Flash
``.swf`` and a YouTube entry.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest

from signflow import video
from signflow.config import DataParams, WlaslSourceParams
from signflow.index import IndexFormatError, load_index
from signflow.sources import read_status_csv, run_download
from signflow.sources.wlasl import is_youtube, yt_dlp_available

BEHAVIOURS = ["ok", "ok", "ok", "404", "slow", "truncated", "flaky", "html", "big", "ok"]


class _Server:
    """A ThreadingHTTPServer whose behaviour per path is a table; it counts requests and concurrency."""

    def __init__(self, routes: dict[str, tuple[str, bytes]]):
        self.routes = routes
        self.requests: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                path = urlparse(self.path).path
                with server.lock:
                    server.requests[path] += 1
                    count = server.requests[path]
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._serve(path, count)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the timeout case): expected
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _send(self, code: int, body: bytes, length: int | None = None, ctype: str = "video/mp4") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)

            def _serve(self, path: str, count: int) -> None:
                kind, body = server.routes.get(path, ("404", b""))
                time.sleep(0.02)  # long enough for concurrent requests to overlap
                if kind in ("ok", "swf", "index", "big"):
                    self._send(200, body, ctype="application/json" if kind == "index" else "video/mp4")
                elif kind == "404":
                    self._send(404, b"not found", ctype="text/plain")
                elif kind == "slow":
                    time.sleep(1.5)  # longer than the client's timeout
                    self._send(200, body)
                elif kind == "truncated":
                    self._send(200, body[: len(body) // 2], length=len(body))
                    self.close_connection = True
                elif kind == "flaky":
                    if count == 1:
                        self._send(503, b"busy", ctype="text/plain")
                    else:
                        self._send(200, body)
                elif kind == "html":
                    self._send(200, b"<html><body>This video has moved</body></html>", ctype="text/html")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _real_entries(shared_data: Path) -> tuple[list[dict], list[dict], dict, dict]:
    """Real index entries: 10 direct .mp4 URLs, one .swf, one YouTube (first ones in index order)."""
    raw = json.loads((shared_data / "wlasl" / "WLASL_v0.3_first100.json").read_text())
    mp4, swf, youtube = [], None, None
    for entry in raw:
        for inst in entry["instances"]:
            url = inst["url"]
            if is_youtube(url):
                youtube = youtube or (entry["gloss"], inst)
            elif url.endswith(".swf"):
                swf = swf or (entry["gloss"], inst)
            elif url.endswith(".mp4") and len(mp4) < len(BEHAVIOURS) and urlparse(url).path not in {
                urlparse(i["url"]).path for _, i in mp4
            }:
                mp4.append((entry["gloss"], inst))
    assert len(mp4) == len(BEHAVIOURS) and swf and youtube
    return raw, mp4, swf, youtube


@pytest.fixture
def wlasl_site(shared_data: Path, make_video, tmp_path: Path):
    _, mp4, swf, youtube = _real_entries(shared_data)
    clip_path, _ = make_video("fixture.mp4", num_frames=12, lossless=False)
    clip = clip_path.read_bytes()
    swf_path = tmp_path / "fixture.swf"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-t", "0.6",
         "-c:v", "flv", "-f", "swf", str(swf_path)],
        check=True,
    )
    routes: dict[str, tuple[str, bytes]] = {}
    expected: dict[str, str] = {}
    glosses: dict[str, list[dict]] = {}
    for behaviour, (gloss, inst) in zip(BEHAVIOURS, mp4):
        body = b"x" * 300_000 if behaviour == "big" else clip
        routes[urlparse(inst["url"]).path] = (behaviour, body)
        expected[inst["video_id"]] = {
            "ok": "ok", "flaky": "ok", "404": "missing", "slow": "http_error", "truncated": "http_error",
            "html": "corrupt", "big": "skipped",
        }[behaviour]
        glosses.setdefault(gloss, []).append(inst)
    routes[urlparse(swf[1]["url"]).path] = ("swf", swf_path.read_bytes())
    expected[swf[1]["video_id"]] = "ok"
    glosses.setdefault(swf[0], []).append(swf[1])
    glosses.setdefault(youtube[0], []).append(youtube[1])
    expected[youtube[1]["video_id"]] = "ok" if yt_dlp_available() else "skipped"

    with _Server(routes) as server:
        base = f"http://127.0.0.1:{server.port}"
        index = []
        for gloss, instances in glosses.items():
            rewritten = []
            for inst in instances:
                parsed = urlparse(inst["url"])
                url = inst["url"] if is_youtube(inst["url"]) else base + parsed.path
                rewritten.append({**inst, "url": url})
            index.append({"gloss": gloss, "instances": rewritten})
        routes["/WLASL_v0.3.json"] = ("index", json.dumps(index).encode())
        yield server, f"{base}/WLASL_v0.3.json", expected, routes


def _params(index_url: str) -> DataParams:
    return DataParams(
        source="wlasl",
        wlasl=WlaslSourceParams(
            index=index_url,
            subset=None,
            concurrency=6,
            per_host_concurrency=3,
            timeout_s=0.5,
            retries=2,
            backoff_s=0.01,
            max_bytes=200_000,
            youtube=True,
        ),
    )


def test_download_statuses_resume_and_politeness(wlasl_site, tmp_path: Path) -> None:
    server, index_url, expected, routes = wlasl_site
    if yt_dlp_available():
        pytest.skip("yt-dlp is installed: the YouTube entry would go to the internet")
    cache = tmp_path / "cache"
    out = tmp_path / "raw"
    summary = run_download(_params(index_url), out, cache_dir=cache)

    rows = {row.video_id: row for row in read_status_csv(out / "status.csv")}
    assert {vid: row.status for vid, row in rows.items()} == expected
    reasons = {expected_status: [] for expected_status in expected.values()}
    for vid, row in rows.items():
        reasons[row.status].append(row.reason)
    assert any("HTTP 404" in r for r in reasons["missing"])
    assert any("timeout" in r for r in reasons["http_error"])
    assert any("truncated body" in r for r in reasons["http_error"])
    assert any("too large" in r for r in reasons["skipped"])
    assert any("yt-dlp not installed" in r for r in reasons["skipped"])
    assert reasons["corrupt"] and all("not_video" in r or "corrupt" in r for r in reasons["corrupt"])
    assert summary["ok"] == 6 and summary["videos"] == len(expected)

    # Every ok video is in videos/, decodes, and is referenced by the index; nothing else is kept.
    entries = load_index(out / "index.json")
    files = {inst.video_id: inst.file for e in entries for inst in e.instances}
    for vid, status in expected.items():
        if status == "ok":
            assert files[vid] == f"videos/{vid}.mp4"
            assert video.probe(out / files[vid]).num_frames > 0
        else:
            assert files[vid] is None and not list((out / "videos").glob(f"{vid}.*"))
    assert not list((cache / "partial").iterdir()), "a partial download was left behind"
    assert len(list((cache / "files").iterdir())) == 6  # no truncated/HTML/oversized file kept

    # Polite: retries only where they help, never more than per_host_concurrency at once.
    path_of = {inst.video_id: urlparse(inst.url).path for e in entries for inst in e.instances}
    by_status = {vid: server.requests[path_of[vid]] for vid in expected if not path_of[vid].startswith("/watch")}
    assert server.max_in_flight <= 3
    for vid, count in by_status.items():
        kind = routes[path_of[vid]][0]
        assert count == {"ok": 1, "swf": 1, "404": 1, "html": 1, "big": 1, "flaky": 2, "slow": 3, "truncated": 3}[kind]

    # Resume: a second run re-uses every completed video without a request.
    before = Counter(server.requests)
    out2 = tmp_path / "raw2"
    run_download(_params(index_url), out2, cache_dir=cache)
    new = server.requests - before
    for vid, status in expected.items():
        if status == "ok" and not path_of[vid].startswith("/watch"):
            assert new[path_of[vid]] == 0, f"{vid} was downloaded again"
    assert {r.video_id: r.status for r in read_status_csv(out2 / "status.csv")} == expected


def test_every_downloaded_video_has_its_probe_in_the_index(wlasl_site, tmp_path: Path) -> None:
    """Crop plans from these (split and crop get index.json alone), so they must be the files' own."""
    _, index_url, _, _ = wlasl_site
    params = _params(index_url)
    params.wlasl.max_videos = 1  # the first entry is an "ok" one
    out = tmp_path / "raw"
    run_download(params, out, cache_dir=tmp_path / "cache")
    [inst] = [inst for entry in load_index(out / "index.json") for inst in entry.instances]
    info = video.probe(out / inst.file)
    assert inst.probe is not None and inst.probe.model_dump() == {
        "width": info.width, "height": info.height, "fps": info.fps, "num_frames": info.num_frames}


def test_partial_file_without_marker_is_not_taken_as_complete(wlasl_site, tmp_path: Path) -> None:
    server, index_url, expected, routes = wlasl_site
    cache = tmp_path / "cache"
    params = _params(index_url)
    params.wlasl.max_videos = 1  # the first entry is an "ok" one
    run_download(params, tmp_path / "raw", cache_dir=cache)
    [done] = list((cache / "done").iterdir())
    vid = done.stem
    path = next(p for p, (kind, _) in routes.items() if kind == "ok" and server.requests[p])
    # Simulate a crash between writing the file and its marker: the file must be fetched again.
    done.unlink()
    (cache / "files" / f"{vid}.mp4").write_bytes(b"half a video")
    run_download(params, tmp_path / "raw2", cache_dir=cache)
    assert server.requests[path] == 2
    assert video.probe(tmp_path / "raw2" / "videos" / f"{vid}.mp4").num_frames > 0


def test_missing_index_is_a_clear_error(tmp_path: Path) -> None:
    params = DataParams(source="wlasl", wlasl=WlaslSourceParams(index=str(tmp_path / "nope.json")))
    with pytest.raises(IndexFormatError, match="index file not found"):
        run_download(params, tmp_path / "raw", cache_dir=tmp_path / "cache")
    params = DataParams(source="wlasl", wlasl=WlaslSourceParams(index="http://127.0.0.1:9/none.json", timeout_s=0.5))
    with pytest.raises(IndexFormatError, match="cannot fetch the index"):
        run_download(params, tmp_path / "raw", cache_dir=tmp_path / "cache")



def test_subset_selection(shared_data: Path) -> None:
    from signflow.sources.wlasl import select

    wlasl = shared_data / "wlasl"
    entries = load_index(wlasl / "WLASL_v0.3_first300.json")
    by_k = select(WlaslSourceParams(subset=100), entries)
    by_file = select(WlaslSourceParams(subset=None, subset_file=str(wlasl / "nslt_100.json")), entries)
    ids = lambda es: {i.video_id for e in es for i in e.instances}  # noqa: E731
    assert len(by_k) == len(by_file) == 100 and ids(by_k) == ids(by_file) and len(ids(by_k)) == 2038
    capped = select(WlaslSourceParams(subset=2, max_videos=5), entries)
    assert [e.gloss for e in capped] == ["book"] and len(capped[0].instances) == 5
    with pytest.raises(IndexFormatError, match="nslt subset file not found"):
        select(WlaslSourceParams(subset_file=str(wlasl / "nslt_7.json")), entries)


def test_unreadable_swf_is_reported(tmp_path: Path) -> None:
    from signflow.sources.wlasl import _convert_swf, _Failure

    bad = tmp_path / "sign.swf"
    bad.write_bytes(b"FWS\x09" + b"\x00" * 200)  # an swf header with no video in it
    with pytest.raises(_Failure) as caught:
        _convert_swf(bad, tmp_path / "out.mp4")
    assert caught.value.status == "corrupt" and caught.value.reason.startswith(".swf conversion failed")
    assert not (tmp_path / "out.mp4").exists()
