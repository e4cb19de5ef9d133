"""The chat page in a real browser: headless Chromium (Debian's, driven by Playwright) against a real
server on the tiny random model. Type, watch the picture form row by row, edit by chatting, undo,
reload and find the conversation again, attach a picture, download with provenance. Then the same
page on the shipped checkpoints, its pictures read by the judge.

Needs `pip install playwright` (the Python package only) and `apt-get install chromium`; skipped
with the reason otherwise. Leaves a screenshot in the test's tmp folder and at /tmp/mmgen-web.png.
"""
from __future__ import annotations

import base64
import contextlib
import io
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

CHROMIUM = os.environ.get("MMGEN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed "
                                                            "(pip install playwright; no browser download needed)")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")
if not os.path.exists(CHROMIUM):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

from mmgen.eval.judge import judge  # noqa: E402
from mmgen.imageutil import TRAINED_ALGORITHMIC_MEDIA  # noqa: E402
from mmgen.server import ServerConfig  # noqa: E402
from test_server import serve  # noqa: E402  (the same loopback server the API tests use)

SHOT = "/tmp/mmgen-web.png"


def finals(page) -> int:
    return page.locator(".msg.assistant img[data-final=true]").count()


def send(page, text: str, expect_finals: int) -> None:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")
    page.wait_for_function("n => document.querySelectorAll('.msg.assistant img[data-final=true]').length === n",
                           arg=expect_finals, timeout=60_000)
    page.wait_for_selector("#send:not([hidden])")


@pytest.fixture(scope="module")
def drawing_model(tiny_checkpoints):
    """The tiny random model with a random last decoder layer (zero at initialisation: flat grey pictures),
    so the pictures on the page differ with their codes. A fresh load: the shared tiny_model is untouched."""
    import mmgen
    torch.set_num_threads(1)
    model = mmgen.load(tiny_checkpoints, dtype=torch.float32)
    with torch.no_grad():
        model.vq.decoder.net[-1].weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    return model


def test_chat_page_draws_edits_undoes_restores(drawing_model, tmp_path):
    tiny_model = drawing_model
    with serve(tiny_model, ServerConfig(session_defaults={"max_words": 3})) as (url, _app), \
            sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 820, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(url)
            page.wait_for_selector("body[data-ready=true]")
            assert page.inner_text("#model") == tiny_model.name
            # count every change of a picture's pixels: the previews, one per row, then the final picture
            page.evaluate("""() => {
                window.__frames = 0;
                new MutationObserver((ms) => ms.forEach((m) => {
                    if (m.attributeName === 'src' && m.target.classList.contains('picture')) window.__frames++;
                })).observe(document.getElementById('log'),
                            {subtree: true, attributes: true, attributeFilter: ['src']});
            }""")
            page.select_option("#picture", "always")       # the random model would not choose to draw

            send(page, "draw a red circle at the top left", 1)
            assert page.evaluate("window.__frames") >= 16   # it formed top-down, row by row
            send(page, "make it blue", 2)
            link = page.locator(".msg.assistant figcaption a").last
            assert link.get_attribute("download").startswith("mmgen-img_")
            href = link.get_attribute("href")
            image = Image.open(io.BytesIO(base64.b64decode(href.split(",", 1)[1])))
            assert image.size == (128, 128) and TRAINED_ALGORITHMIC_MEDIA in image.info["XML:com.adobe.xmp"]
            assert image.info["mmgen:prompt"] == "make it blue"

            first = page.evaluate("document.querySelectorAll('.msg.assistant')[0].dataset.responseId")
            page.click("#undo")                              # back to the first picture
            assert finals(page) == 1 and page.evaluate("localStorage.getItem('mmgen.current')") == first
            send(page, "make it green", 2)

            page.reload()                                    # the conversation comes back from the server
            page.wait_for_selector("body[data-ready=true]")
            assert page.locator(".msg.assistant img.picture").count() == 2
            assert page.locator(".msg.user").all_inner_texts() == ["draw a red circle at the top left", "make it green"]
            assert not page.is_disabled("#undo")

            # attach a picture of one's own and ask for an edit of it
            upload = tmp_path / "mine.png"
            pixels = np.zeros((128, 128, 3), np.uint8)
            pixels[32:96, 32:96] = (230, 40, 40)
            Image.fromarray(pixels).save(upload)
            page.select_option("#picture", "always")
            page.set_input_files("#file", str(upload))
            page.wait_for_selector("#attachment:not([hidden])")
            page.fill("#prompt", "make the square yellow")
            page.click("#send")
            page.wait_for_function("document.querySelectorAll('.msg.assistant img[data-final=true]').length === 1",
                                   timeout=60_000)
            assert page.locator(".msg.user img.picture").count() == 1
            assert page.is_hidden("#attachment")
            page.wait_for_selector("#send:not([hidden])")
            assert not errors, errors

            page.set_viewport_size({"width": 820, "height": 1700})    # the whole conversation in one picture
            page.evaluate("document.getElementById('log').scrollTop = 0")
            shot = tmp_path / "mmgen-web.png"
            page.screenshot(path=str(shot))
            assert Image.open(shot).size[0] == 820
            with contextlib.suppress(OSError):
                shutil.copy(shot, SHOT)
        finally:
            browser.close()


def final_picture(page, i: int) -> Image.Image:
    """The i-th assistant picture, as its download link carries it."""
    href = page.locator(".msg.assistant figcaption a").nth(i).get_attribute("href")
    return Image.open(io.BytesIO(base64.b64decode(href.split(",", 1)[1]))).convert("RGB")


def test_chat_page_on_the_shipped_model_draws_what_was_asked(shipped_model, tmp_path):
    """Type a prompt, then an edit, on the shipped checkpoints; the judge reads both pictures the page
    shows. Leaves its screenshot at /tmp/mmgen-web-shipped.png."""
    with serve(shipped_model, ServerConfig()) as (url, _app), sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 820, "height": 900})
            page.goto(url)
            page.wait_for_selector("body[data-ready=true]")
            page.fill("#seed", "0")                          # a fixed case, not a lucky draw
            send(page, "a blue square in the top left", 1)
            send(page, "make the square red", 2)
            read = [judge(final_picture(page, i)) for i in (0, 1)]
            assert [[(o["color"], o["shape"], o["cell"]) for o in r["objects"]] for r in read] == [
                [("blue", "square", "top left")], [("red", "square", "top left")]], read
            # a slip of the keyboard: the reply is followed by a note naming the word it was not taught
            assert page.locator(".msg.assistant .note").count() == 0
            page.fill("#prompt", "how many sqaures are there?")
            page.press("#prompt", "Enter")
            page.wait_for_selector(".msg.assistant .note", timeout=60_000)
            page.wait_for_selector("#send:not([hidden])")
            assert page.locator(".msg.assistant .note").inner_text() == 'Did you mean "squares" for "sqaures"?'
            assert visible_in_log(page, ".msg.assistant .note")
            page.reload()                                    # the restored conversation says it again
            page.wait_for_selector(".msg.assistant .note", timeout=60_000)
            assert page.locator(".msg.assistant .note").all_inner_texts() == ['Did you mean "squares" for "sqaures"?']
            shot = tmp_path / "mmgen-web-shipped.png"
            page.screenshot(path=str(shot))
            with contextlib.suppress(OSError):
                shutil.copy(shot, "/tmp/mmgen-web-shipped.png")
        finally:
            browser.close()


def visible_in_log(page, selector: str) -> bool:
    """Whether the element is wholly inside the conversation's visible area (not under the footer)."""
    return page.evaluate("""(sel) => {
        const el = document.querySelectorAll(sel); const last = el[el.length - 1];
        const box = last.getBoundingClientRect(), log = document.getElementById('log').getBoundingClientRect();
        const footer = document.querySelector('footer').getBoundingClientRect();
        return box.top >= log.top && box.bottom <= log.bottom && box.bottom <= footer.top;
    }""", selector)


def test_chat_page_long_paste_box_height_and_error_bubbles(drawing_model):
    """A paste over the limit is kept whole and the page says so (no silent cut, nothing sent); the box
    shrinks back after sending; an error bubble is scrolled into view, not left under the footer."""
    with serve(drawing_model, ServerConfig(session_defaults={"max_words": 3})) as (url, _app), \
            sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 820, "height": 600})
            page.goto(url)
            page.wait_for_selector("body[data-ready=true]")
            page.select_option("#picture", "never")                  # words only: quick turns
            one_row = page.evaluate("document.getElementById('prompt').offsetHeight")

            page.focus("#prompt")
            page.keyboard.insert_text("x" * 4500)                       # as a paste arrives
            assert len(page.input_value("#prompt")) == 4500              # not cut at 4,000
            status = page.inner_text("#status")
            assert "4,500 characters" in status and "4,000" in status, status
            assert page.evaluate("document.getElementById('status').classList.contains('error')")
            page.press("#prompt", "Enter")
            assert page.locator(".msg").count() == 0 and len(page.input_value("#prompt")) == 4500
            page.fill("#prompt", "x" * 4000)                             # at the limit: fine again
            assert page.inner_text("#status") == ""

            # the box grows with its lines and shrinks back once the message is sent
            page.fill("#prompt", "")
            for i in range(12):
                page.keyboard.type(f"line {i}")
                page.keyboard.press("Shift+Enter")
            grown = page.evaluate("document.getElementById('prompt').offsetHeight")
            assert grown > 2 * one_row
            page.press("#prompt", "Enter")
            page.wait_for_selector("#send:not([hidden])")
            page.wait_for_function("document.querySelectorAll('.msg.assistant:not(.error)').length === 1")
            assert page.evaluate("document.getElementById('prompt').offsetHeight") == one_row
            page.fill("#prompt", "\n".join(f"more {i}" for i in range(12)))
            page.press("#prompt", "Enter")
            page.wait_for_function("document.querySelectorAll('.msg.assistant:not(.error)').length === 2")
            page.wait_for_selector("#send:not([hidden])")
            assert page.evaluate("(log => log.scrollHeight > log.clientHeight)(document.getElementById('log'))")

            # a request the server refuses: the error bubble is in view, whole
            page.fill("#seed", "99999999999")
            page.fill("#prompt", "draw a star")
            page.press("#prompt", "Enter")
            page.wait_for_selector(".msg.assistant.error")
            page.wait_for_selector("#send:not([hidden])")
            assert "seed" in page.inner_text(".msg.assistant.error")
            assert visible_in_log(page, ".msg.assistant.error")
        finally:
            browser.close()


def test_chat_page_asks_for_the_api_key(drawing_model):
    """With --api-key the page still loads, says it needs the key when a turn is refused, and works once
    the key is entered."""
    with serve(drawing_model, ServerConfig(api_key="page-key", session_defaults={"max_words": 3})) as (url, _app), \
            sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 820, "height": 700})
            page.goto(url)
            page.wait_for_selector("body[data-ready=true]")
            assert page.is_visible("#keybar")
            page.select_option("#picture", "never")
            page.fill("#prompt", "hello")
            page.press("#prompt", "Enter")
            page.wait_for_selector(".msg.assistant.error")
            assert "API key" in page.inner_text(".msg.assistant.error")
            page.fill("#key", "page-key")
            page.dispatch_event("#key", "change")
            page.wait_for_selector("#send:not([hidden])")
            page.fill("#prompt", "hello again")
            page.press("#prompt", "Enter")
            page.wait_for_function("document.querySelectorAll('.msg.assistant:not(.error)').length === 1",
                                   timeout=60_000)
            assert page.locator(".msg.assistant.error").count() == 1      # only the first, refused, turn
        finally:
            browser.close()
