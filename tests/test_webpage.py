"""The web page in a real headless browser (Debian chromium driven by Playwright) against a real server."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import moving_square_frames
from served import Served, bentoml_serve
from signflow import video
from tiny_model import GLOSSES

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-extensions", "--no-first-run", "--mute-audio",
    # A synthetic camera (a moving test pattern) and auto-accepted permission prompts, for the webcam path.
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Served:
    with bentoml_serve(tmp_path_factory.mktemp("web"), {"top_k": 3}) as served:
        yield served


@pytest.fixture
def browser_page():
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium not found at {CHROMIUM} (apt install chromium)")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def test_upload_a_clip_and_see_the_top3_glosses(server: Served, browser_page, tmp_path: Path) -> None:
    clip = tmp_path / "sign.mp4"
    video.write_video(clip, moving_square_frames(20), 25.0)
    page = browser_page
    page.goto(server.url + "/")
    assert page.title().startswith("signflow")
    page.wait_for_selector(f"#model-tag:has-text('{server.tag}')", timeout=10_000)

    page.set_input_files("#video-input", str(clip))
    page.click("#upload-button")
    page.wait_for_selector("#predictions li.prediction", timeout=30_000)

    items = page.locator("#predictions li.prediction")
    assert items.count() == 3
    glosses = [items.nth(i).locator(".gloss").inner_text() for i in range(3)]
    assert set(glosses) <= set(GLOSSES) and len(set(glosses)) == 3
    assert "%" in items.nth(0).locator(".prob").inner_text()
    assert "ms round trip" in page.locator("#latency").inner_text()


def test_a_refused_upload_shows_the_reason(server: Served, browser_page, tmp_path: Path) -> None:
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_bytes(b"definitely not a video" * 50)
    page = browser_page
    page.goto(server.url + "/")
    page.set_input_files("#video-input", str(not_a_video))
    page.click("#upload-button")
    page.wait_for_selector("#status.error", timeout=30_000)
    assert "not_video" in page.locator("#status").inner_text()


def test_record_from_the_webcam_and_see_a_prediction(server: Served, browser_page) -> None:
    """MediaRecorder's webm (VP8) from chromium's fake camera goes through the same endpoint."""
    page = browser_page
    page.goto(server.url + "/")
    page.click("#camera-button")
    page.wait_for_selector("#record-button:not([disabled])", timeout=15_000)
    page.fill("#record-seconds", "1")
    page.click("#record-button")
    page.wait_for_selector("#predictions li.prediction", timeout=30_000)
    assert page.locator("#predictions li.prediction").count() == 3
