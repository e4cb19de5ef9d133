"""`mmgen serve` end to end: a real uvicorn server on loopback, driven by the official `openai` client
(and by raw HTTP for malformed requests). Most run on the tiny random checkpoints — the pictures mean
nothing, the plumbing is real: shapes the client parses, streaming events, masks, conversations,
limits, errors, the one-worker queue, timeouts and shutdown. The last few run on the shipped
checkpoints, and the judge reads the pictures the client gets back against their prompts."""
from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import http.client
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")
pytest.importorskip("multipart")

from mmgen.eval.judge import judge  # noqa: E402
from mmgen.imageutil import TRAINED_ALGORITHMIC_MEDIA  # noqa: E402
from mmgen.server import ServerConfig, add_arguments, create_app  # noqa: E402
from mmgen.server import run as run_server  # noqa: E402
from mmgen.server_api import (APIError, ImageOptions, ResponseEvents, Usage, fit_picture, image_call_item,  # noqa: E402
                              images_response)
from mmgen.server_worker import Entry, SessionStore, Worker  # noqa: E402
from mmgen.stream import Conversation, Turn  # noqa: E402
from mmgen.world.render import render  # noqa: E402
from mmgen.world.scene import Obj, Scene, place  # noqa: E402

KEY = "test-key"
CAP = 1 << 20                       # 1 MiB request bodies in these tests
DEFAULTS = {"max_words": 3}         # the random model would babble 64 words before each picture
JSON = {"Content-Type": "application/json"}


@contextlib.contextmanager
def serve(model, config: ServerConfig):
    """A uvicorn server for `create_app(model, config)` on a loopback port, in a thread; stopped after."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    app = create_app(model, config)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=10))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(300):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "the server did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", app
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        assert not thread.is_alive(), "the server did not stop"


@pytest.fixture(scope="module")
def drawing_model(tiny_checkpoints):
    """The tiny random model, its decoder's last layer (zero at initialisation: every picture flat grey)
    made random, so pictures differ with their codes. A fresh load: the shared tiny_model is untouched."""
    import mmgen
    torch.set_num_threads(1)
    model = mmgen.load(tiny_checkpoints, dtype=torch.float32)
    with torch.no_grad():
        model.vq.decoder.net[-1].weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    return model


@pytest.fixture(scope="module")
def server(drawing_model):
    config = ServerConfig(api_key=KEY, max_body_bytes=CAP, timeout=120, max_queue=16, max_sessions=8,
                          session_defaults=DEFAULTS)
    with serve(drawing_model, config) as (url, app):
        yield url, app


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key=KEY, max_retries=0, timeout=120)


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def picture(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def noise(seed=0, size=128) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB")


def raw(url, method, path, body: bytes = b"", headers=None):
    """One plain HTTP request: (status, parsed JSON or text)."""
    status, _, data = raw_with_headers(url, method, path, body, headers)
    return status, data


def raw_with_headers(url, method, path, body: bytes = b"", headers=None):
    """One plain HTTP request: (status, response headers, parsed JSON or text). A Host in `headers`
    replaces the one http.client would send."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request(method, path, body=body, headers={"Authorization": f"Bearer {KEY}", **(headers or {})})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    try:
        return response.status, response.headers, json.loads(data)
    except ValueError:
        return response.status, response.headers, data.decode(errors="replace")


def sse_events(text: str) -> list[dict]:
    return [json.loads(line[5:]) for line in text.split("\n") if line.startswith("data:")]


def assert_error(status, body, expected, param=None):
    assert status == expected, body
    assert set(body["error"]) == {"message", "type", "code", "param"}, body
    assert body["error"]["message"] and "Traceback" not in body["error"]["message"]
    if param is not None:
        assert body["error"]["param"] == param, body


def prompt_ids(model, text, image_codes=None) -> list[int]:
    conv = Conversation((Turn("user", text, image_codes),))
    return model.stream.encode(conv, generation_prompt=True).ids


# --- images ------------------------------------------------------------------------------------------
def test_generate_two_pictures_with_usage_and_provenance(client, tiny_model):
    r = client.images.generate(prompt="draw a red circle at the top left", n=2, size="128x128", extra_body={"seed": 3})
    assert isinstance(r, openai.types.ImagesResponse)
    assert len(r.data) == 2 and r.size == "128x128" and r.output_format == "png" and r.background == "opaque"
    images = [picture(d.b64_json) for d in r.data]
    assert all(im.size == (128, 128) and im.format == "PNG" for im in images)
    assert TRAINED_ALGORITHMIC_MEDIA in images[0].info["XML:com.adobe.xmp"]
    assert images[0].info["mmgen:prompt"] == "draw a red circle at the top left"
    # each picture of the batch has its own provenance id, and its place in the batch drawn with the seed
    assert images[0].info["mmgen:id"] != images[1].info["mmgen:id"]
    assert [im.info["mmgen:batch"] for im in images] == ["1/2", "2/2"]
    assert {im.info["mmgen:seed"] for im in images} == {"3"}
    # usage counts the stream's ids: the prompt as generation reads it, 256 codes per picture
    ids = prompt_ids(tiny_model, "draw a red circle at the top left")
    assert r.usage.input_tokens == len(ids) and r.usage.input_tokens_details.image_tokens == 0
    assert r.usage.output_tokens_details.image_tokens == 2 * 256
    assert r.usage.output_tokens > 512 and r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    # the seed extension makes it reproducible
    again = client.images.generate(prompt="draw a red circle at the top left", n=2, extra_body={"seed": 3})
    assert [picture(d.b64_json).tobytes() for d in again.data] == [im.tobytes() for im in images]


def test_formats_and_transparency(client):
    r = client.images.generate(prompt="a blue square", output_format="webp", background="transparent")
    im = picture(r.data[0].b64_json)
    assert im.format == "WEBP" and im.mode == "RGBA" and r.background == "transparent"
    r = client.images.generate(prompt="a blue square", output_format="jpeg", size="auto")
    assert picture(r.data[0].b64_json).format == "JPEG"
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(prompt="a blue square", output_format="jpeg", background="transparent")
    assert e.value.status_code == 400 and "transparent" in e.value.message


def test_edit_without_mask(client):
    r = client.images.edit(image=("in.png", png(noise(1)), "image/png"), prompt="make it blue")
    assert len(r.data) == 1 and picture(r.data[0].b64_json).size == (128, 128)
    assert r.usage.input_tokens_details.image_tokens == 256          # the given picture, as 256 codes


def test_edit_with_mask_keeps_the_opaque_region(client):
    original = noise(2)
    alpha = np.zeros((128, 128), np.uint8)
    alpha[:, :64] = 255                                                # keep the left half, redraw the right
    mask = Image.fromarray(np.dstack([np.zeros((128, 128, 3), np.uint8), alpha]), "RGBA")
    r = client.images.edit(image=("in.png", png(original), "image/png"), mask=("mask.png", png(mask), "image/png"),
                           prompt="put a star on the right", n=2)
    before = np.asarray(original)
    for d in r.data:
        after = np.asarray(picture(d.b64_json).convert("RGB"))
        assert np.array_equal(after[:, :64], before[:, :64])          # kept exactly
        assert not np.array_equal(after[:, 64:], before[:, 64:])      # redrawn
    # a mask of another size, or without alpha, is refused with a clear message
    for bad, word in ((mask.resize((64, 64)), "same size"), (mask.convert("RGB"), "alpha")):
        with pytest.raises(openai.BadRequestError) as e:
            client.images.edit(image=("in.png", png(original), "image/png"), mask=("m.png", png(bad), "image/png"),
                               prompt="x")
        assert word in e.value.message and e.value.param == "mask"


def test_edit_as_json_with_data_urls(server):
    original = noise(7)
    alpha = np.full((128, 128), 255, np.uint8)
    alpha[64:] = 0                                                     # redraw the bottom half only
    mask = Image.fromarray(np.dstack([np.zeros((128, 128, 3), np.uint8), alpha]), "RGBA")

    def url(image):
        return "data:image/png;base64," + base64.b64encode(png(image)).decode()

    body = {"prompt": "add a moon", "images": [{"image_url": url(original)}], "mask": {"image_url": url(mask)}}
    status, r = raw(server[0], "POST", "/v1/images/edits", json.dumps(body).encode(), JSON)
    assert status == 200, r
    after = np.asarray(picture(r["data"][0]["b64_json"]).convert("RGB"))
    assert np.array_equal(after[:64], np.asarray(original)[:64])
    body["images"] = [{"image_url": "https://example.com/cat.png"}]
    status, error = raw(server[0], "POST", "/v1/images/edits", json.dumps(body).encode(), JSON)
    assert_error(status, error, 400, "images[0].image_url")
    # the picture as `image`, the multipart field's name, given a data URL
    plain = {"prompt": "add a moon", "image": url(original)}
    status, r = raw(server[0], "POST", "/v1/images/edits", json.dumps(plain).encode(), JSON)
    assert status == 200, r
    status, error = raw(server[0], "POST", "/v1/images/edits", json.dumps({**plain, "image": 3}).encode(), JSON)
    assert_error(status, error, 400, "image")
    # a multipart edit whose prompt came as a file part is told so, not that the prompt is missing
    parts = [("image", 'filename="in.png"', png(noise(3))), ("prompt", 'filename="prompt.txt"', b"add a moon")]
    body = b"".join(b"--B\r\nContent-Disposition: form-data; name=\"%s\"; %s\r\n\r\n%s\r\n"
                    % (name.encode(), extra.encode(), data) for name, extra, data in parts) + b"--B--\r\n"
    status, error = raw(server[0], "POST", "/v1/images/edits", body, {"Content-Type": "multipart/form-data; boundary=B"})
    assert_error(status, error, 400, "prompt")
    assert "must be a text field" in error["error"]["message"]


def test_stream_partial_images(client):
    events = list(client.images.generate(prompt="a green triangle", stream=True, partial_images=2))
    assert [e.type for e in events] == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
    assert isinstance(events[0], openai.types.ImageGenPartialImageEvent)
    assert [e.partial_image_index for e in events[:2]] == [0, 1]
    first = np.asarray(picture(events[0].b64_json).convert("RGB"))
    assert first.shape == (128, 128, 3)
    # partial 0 comes after row 5 of 16 (partial 1 after row 11): drawn rows above, flat grey rows to come
    assert first[:40].std() > 5 and (first[48:] == 128).all()
    done = events[-1]
    assert isinstance(done, openai.types.ImageGenCompletedEvent)
    final = np.asarray(picture(done.b64_json).convert("RGB"))
    assert final.shape == (128, 128, 3) and final[48:].std() > 5 and done.usage.output_tokens > 256
    edits = list(client.images.edit(image=("in.png", png(noise(3)), "image/png"), prompt="make it red",
                                    stream=True, partial_images=1))
    assert [e.type for e in edits] == ["image_edit.partial_image", "image_edit.completed"]
    assert isinstance(edits[-1], openai.types.ImageEditCompletedEvent)


def test_models(client, tiny_model):
    assert [m.id for m in client.models.list()] == [tiny_model.name]
    assert client.models.retrieve(tiny_model.name).id == tiny_model.name
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-image-1")


# --- conversations ---------------------------------------------------------------------------------------
TOOLS = [{"type": "image_generation"}]
DRAW = {"type": "image_generation"}


def image_call(response):
    calls = [o for o in response.output if o.type == "image_generation_call"]
    assert len(calls) == 1 and calls[0].status == "completed"
    return calls[0]


def test_responses_keep_editing_the_same_picture(client, tiny_model):
    r1 = client.responses.create(model=tiny_model.name, input="draw a red circle", tools=TOOLS, tool_choice=DRAW)
    assert r1.status == "completed" and image_call(r1).action == "generate"
    assert picture(image_call(r1).result).size == (128, 128)
    assert isinstance(r1.output_text, str)
    r2 = client.responses.create(input="make it blue", previous_response_id=r1.id, tools=TOOLS, tool_choice=DRAW)
    assert r2.previous_response_id == r1.id and image_call(r2).action == "edit"
    # the second turn reads the first picture's 256 codes: the conversation went with the id
    assert r2.usage.input_tokens >= r1.usage.input_tokens + 256
    assert client.responses.retrieve(r2.id).id == r2.id
    # branching: r1 can be continued again (stored conversations never change); words-only without the tool
    r3 = client.responses.create(input="what colour is it?", previous_response_id=r1.id)
    assert not [o for o in r3.output if o.type == "image_generation_call"]
    assert r3.usage.input_tokens == r2.usage.input_tokens - len(tiny_model.stream.text.encode("make it blue")) \
        + len(tiny_model.stream.text.encode("what colour is it?"))
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.create(input="again", previous_response_id="resp_nope", tools=TOOLS)
    assert e.value.code == "previous_response_not_found"
    client.responses.delete(r3.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r3.id)


def test_an_undo_in_words_answers_with_the_picture_before(client, tiny_model):
    from mmgen.typed_undo import UNDONE
    r1 = client.responses.create(model=tiny_model.name, input="draw a red circle", tools=TOOLS, tool_choice=DRAW)
    r2 = client.responses.create(input="make it blue", previous_response_id=r1.id, tools=TOOLS, tool_choice=DRAW)
    r3 = client.responses.create(input="undo that", previous_response_id=r2.id, tools=TOOLS)
    assert r3.output_text == UNDONE
    assert picture(image_call(r3).result).tobytes() == picture(image_call(r1).result).tobytes()
    assert r3.usage.input_tokens == r3.usage.output_tokens == 0          # the chat answered, not the model
    # the next turn reads the conversation as it was after r1: the change and the request are gone
    r4 = client.responses.create(input="make it blue", previous_response_id=r3.id, tools=TOOLS, tool_choice=DRAW)
    assert r4.usage.input_tokens == r2.usage.input_tokens
    # the images API always draws: "undo" there is a prompt like any other
    assert len(client.images.generate(model=tiny_model.name, prompt="undo", n=1).data) == 1


def test_responses_input_image_and_streaming(client):
    data_url = "data:image/png;base64," + base64.b64encode(png(noise(4))).decode()
    message = [{"role": "user", "content": [{"type": "input_image", "image_url": data_url},
                                            {"type": "input_text", "text": "make it blue"}]}]
    events = list(client.responses.create(input=message, tools=[{"type": "image_generation", "partial_images": 2}],
                                          tool_choice="required", stream=True))
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    assert types.count("response.image_generation_call.partial_image") == 2
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response
    call = image_call(final)
    assert call.action == "edit" and final.usage.input_tokens > 256
    done = [e for e in events if e.type == "response.output_item.done" and e.item.type == "image_generation_call"]
    assert done[0].item.result == call.result
    words = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert words.strip() == final.output_text.strip()
    # the streamed conversation is stored like any other
    follow = client.responses.create(input="now green", previous_response_id=final.id, tools=TOOLS, tool_choice=DRAW)
    assert image_call(follow).action == "edit"


def test_page_chat_streams_every_row_and_restores(server):
    url, _ = server
    status, text = raw(url, "POST", "/api/chat", json.dumps({"message": "draw a star", "picture": "always",
                                                               "seed": 1}).encode(),
                       {"Content-Type": "application/json"})
    assert status == 200
    events = [json.loads(line[5:]) for line in text.split("\n") if line.startswith("data:")]
    assert [e["rows"] for e in events if e["type"] == "preview"] == list(range(1, 17))
    done = events[-1]
    assert done["type"] == "done" and picture(done["image"]).size == (128, 128)
    assert done["note"] == ""
    status, session = raw(url, "GET", f"/api/session/{done['id']}")
    assert status == 200 and [t["role"] for t in session["turns"]] == ["user", "assistant"]
    assert session["turns"][1]["image"] and session["chain"] == [{"id": done["id"], "previous": None}]


def test_page_chat_names_words_the_model_was_never_taught(server, client, drawing_model):
    before, drawing_model.vocabulary = drawing_model.vocabulary, frozenset({"draw", "a", "star"})
    try:
        # the OpenAI endpoints carry it in their `mmgen` extension field
        r = client.images.generate(prompt="draw a star and a kitten", size="128x128")
        assert r.mmgen["note"] == 'I don\'t know the words "and" and "kitten".'
        events = list(client.images.generate(prompt="draw a kitten", size="128x128", stream=True))
        assert events[-1].mmgen["note"] == 'I don\'t know the word "kitten".'      # and in a stream's last event
        r = client.responses.create(input="draw a kitten", tools=TOOLS, tool_choice=DRAW)
        assert r.mmgen["note"] == 'I don\'t know the word "kitten".'
        status, text = raw(server[0], "POST", "/api/chat", json.dumps({"message": "draw a star and a kitten",
                                                                         "picture": "never"}).encode(),
                           {"Content-Type": "application/json"})
        assert status == 200
        done = [json.loads(line[5:]) for line in text.split("\n") if line.startswith("data:")][-1]
        assert done["type"] == "done" and done["note"] == 'I don\'t know the words "and" and "kitten".'
        status, session = raw(server[0], "GET", f"/api/session/{done['id']}")      # and again after a reload
        assert status == 200 and [t.get("note") for t in session["turns"]] == [None, done["note"]]
    finally:
        drawing_model.vocabulary = before


# --- bad input --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body, param", [
    (b"{not json", None),
    (b"[1, 2]", None),
    (json.dumps({"prompt": 5}).encode(), "prompt"),
    (json.dumps({"n": 1}).encode(), "prompt"),
    (json.dumps({"prompt": "   "}).encode(), "prompt"),
    (json.dumps({"prompt": "x" * 5000}).encode(), "prompt"),
    (json.dumps({"prompt": "x", "n": 9}).encode(), "n"),
    (json.dumps({"prompt": "x", "n": "2"}).encode(), "n"),
    (json.dumps({"prompt": "x", "n": True}).encode(), "n"),
    (json.dumps({"prompt": "x", "size": "1792x1024"}).encode(), "size"),
    (json.dumps({"prompt": "x", "response_format": "url"}).encode(), "response_format"),
    (json.dumps({"prompt": "x", "partial_images": 5, "stream": True}).encode(), "partial_images"),
    (json.dumps({"prompt": "x", "stream": "yes"}).encode(), "stream"),
    (json.dumps({"prompt": "x", "seed": -1}).encode(), "seed"),
    (json.dumps({"prompt": "x", "cfg": 99}).encode(), "cfg"),
    (json.dumps({"prompt": "x", "word_cfg": -1}).encode(), "word_cfg"),
    (json.dumps({"prompt": "x", "temperature": 9}).encode(), "temperature"),
    (json.dumps({"prompt": "x", "top_p": 0}).encode(), "top_p"),
    (json.dumps({"prompt": "x", "top_k": 0}).encode(), "top_k"),
    (b'{"prompt": "x", "cfg": NaN}', None),
    (b'{"prompt": "x", "seed": ' + b"9" * 5000 + b"}", None),
    (b"[" * 100_000 + b"]" * 100_000, None),
])
def test_malformed_generation_requests_get_400(server, body, param):
    status, error = raw(server[0], "POST", "/v1/images/generations", body, JSON)
    assert_error(status, error, 400, param)


@pytest.mark.parametrize("path, body", [("/v1/images/generations", {"model": [], "prompt": "x"}),
                                        ("/v1/images/generations", {"model": 5, "prompt": "x"}),
                                        ("/v1/responses", {"model": {}, "input": "x"})])
def test_a_model_that_is_not_a_string_gets_400(server, path, body):
    """`model` as a list or an object (unhashable) is refused as a wrong type."""
    status, error = raw(server[0], "POST", path, json.dumps(body).encode(), JSON)
    assert_error(status, error, 400, "model")
    assert error["error"]["code"] == "invalid_type" and error["error"]["message"] == "'model' must be a string"


def test_text_that_is_not_utf8_gets_the_sessions_sentence(server):
    """A lone surrogate (JSON's "\\udcff", bytes that were not UTF-8) is a 400 with the sentence
    the Python API, the terminal and the command line give, on every route that takes text."""
    from mmgen.inputs import SessionError, check_text
    with pytest.raises(SessionError) as e:
        check_text("\udcff", "x")
    sentence = str(e.value)[len("x"):]
    for path, field in [("/v1/images/generations", "prompt"), ("/v1/responses", "input"), ("/api/chat", "message")]:
        body = json.dumps({field: "draw a red circle \udcff"}).encode()
        assert b"\\udcff" in body
        status, error = raw(server[0], "POST", path, body, JSON)
        assert_error(status, error, 400, field)
        assert error["error"]["message"].endswith(sentence), error


def test_other_bad_requests(server, client):
    url, _ = server
    body = json.dumps({"prompt": "x", "response_format": "url"}).encode()
    status, error = raw(url, "POST", "/v1/images/generations", body, JSON)
    assert "b64_json" in error["error"]["message"]
    # bodies over the cap: declared, and chunked without a length
    status, error = raw(url, "POST", "/v1/images/generations", b'{"prompt": "' + b"x" * (2 * CAP) + b'"}', JSON)
    assert_error(status, error, 413)
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("POST", "/v1/images/generations", body=iter([b"x" * 65536] * 40), encode_chunked=True,
                 headers={"Authorization": f"Bearer {KEY}", **JSON})
    response = conn.getresponse()
    assert_error(response.status, json.loads(response.read()), 413)
    conn.close()
    # uploads that are not pictures, and edits without a picture
    with pytest.raises(openai.BadRequestError) as e:
        client.images.edit(image=("notes.png", b"these are words, not pixels", "image/png"), prompt="x")
    assert e.value.param == "image" and e.value.status_code == 400
    with pytest.raises(openai.BadRequestError) as e:
        client.images.edit(image=[("a.png", png(noise(5)), "image/png"), ("b.png", png(noise(6)), "image/png")],
                           prompt="two at once")
    assert "one picture at a time" in e.value.message
    status, error = raw(url, "POST", "/v1/images/edits", json.dumps({"prompt": "x"}).encode(), JSON)
    assert_error(status, error, 400, "image")
    assert '"images": [{"image_url": "data:' in error["error"]["message"]            # what form is expected
    # keys
    bad = openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.models.list()
    assert e.value.code == "invalid_api_key"
    status, error = raw(url, "GET", "/v1/models", headers={"Authorization": ""})
    assert_error(status, error, 401)
    # paths, methods, models, the Responses API's own checks
    assert_error(*raw(url, "GET", "/v1/nothing-here"), 404)
    assert_error(*raw(url, "GET", "/v1/images/generations"), 405)
    body = json.dumps({"prompt": "x", "model": "gpt-image-1"}).encode()
    status, error = raw(url, "POST", "/v1/images/generations", body, JSON)
    assert_error(status, error, 404, "model")
    for body in ({"input": 5}, {"input": "x", "tools": [{"type": "web_search"}]},
                 {"input": [{"role": "assistant", "content": "hi"}]},
                 {"input": [{"role": "user",
                             "content": [{"type": "input_image", "image_url": "https://example.com/a.png"}]}]},
                 {"input": "x", "previous_response_id": 7}):
        assert_error(*raw(url, "POST", "/v1/responses", json.dumps(body).encode(), JSON), 400)
    status, health = raw(url, "GET", "/health")
    assert status == 200 and health["status"] == "ok"


# --- parse bombs, parameter errors, streams that fail ------------------------------------------------------
@pytest.mark.parametrize("path", ["/v1/images/generations", "/v1/responses", "/api/chat", "/v1/images/edits"])
def test_parse_bombs_are_400_on_every_json_route(server, path):
    bombs = [b"[" * 100_000 + b"]" * 100_000,                              # past the parser's recursion limit
             b'{"prompt": "x", "input": "x", "message": "x", "tools": ' + b"[" * 500 + b"]" * 500 + b"}",
             b'{"prompt": "x", "n": ' + b"1" * 5000 + b"}",                  # int() refuses 4300+ digits
             b'{"prompt": "x", "cfg": Infinity}']
    for body in bombs:
        status, error = raw(server[0], "POST", path, body, JSON)
        assert_error(status, error, 400)
        assert error["error"]["code"] == "invalid_json", error
    status, error = raw(server[0], "POST", path, bombs[0], JSON)
    assert "nests too deeply" in error["error"]["message"]


def test_an_all_opaque_mask_is_refused_naming_the_mask(client):
    opaque = Image.new("RGBA", (128, 128), (0, 0, 0, 255))
    with pytest.raises(openai.BadRequestError) as e:
        client.images.edit(image=("in.png", png(noise(1)), "image/png"), mask=("m.png", png(opaque), "image/png"),
                           prompt="change it")
    assert e.value.param == "mask" and "nothing to change" in e.value.message


TOO_LONG_FOR_THE_CONTEXT = "draw " + " ".join(f"q{i}" for i in range(700))   # 3394 characters, 2278 ids > 1024


def test_a_stream_that_fails_before_its_first_event_gets_its_status(client, server):
    assert len(TOO_LONG_FOR_THE_CONTEXT) < 4000                     # under the character limit: only the model refuses
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(prompt=TOO_LONG_FOR_THE_CONTEXT, stream=True, partial_images=1)
    assert e.value.status_code == 400 and e.value.code == "context_length_exceeded" and e.value.param == "prompt"
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(input=TOO_LONG_FOR_THE_CONTEXT, tools=TOOLS, stream=True)
    assert e.value.param == "input" and "context" in e.value.message
    body = json.dumps({"message": TOO_LONG_FOR_THE_CONTEXT}).encode()
    status, error = raw(server[0], "POST", "/api/chat", body, JSON)
    assert_error(status, error, 400, "message")
    with pytest.raises(openai.BadRequestError) as e:                    # and without streaming, the same
        client.images.generate(prompt=TOO_LONG_FOR_THE_CONTEXT)
    assert e.value.param == "prompt"


class FailsAfterItsFirstWord:
    """A stand-in model whose reply fails after its first word: the stream has begun (200 sent)."""
    name = "fails-midway"

    def chat(self, **_):
        def stream(*_, **__):
            yield SimpleNamespace(kind="text", text="Sure")
            raise RuntimeError("the model broke")
        return SimpleNamespace(stream=stream)


def test_failures_after_a_stream_began_are_error_events():
    with serve(FailsAfterItsFirstWord(), ServerConfig()) as (url, _):
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=60)
        with pytest.raises(openai.APIError) as e:                       # the official client raises from the event
            list(client.images.generate(prompt="a star", stream=True))
        assert e.value.code == "internal_error" and "model failed" in e.value.message
        for path, body, before in (("/v1/images/generations", {"prompt": "a star", "stream": True}, 0),
                                   ("/api/chat", {"message": "a star"}, 1),           # the word, then the error
                                   ("/v1/responses", {"input": "a star", "stream": True}, None)):
            status, text = raw(url, "POST", path, json.dumps(body).encode(), JSON)
            assert status == 200, text
            events = sse_events(text)
            error = events[-1]
            assert error["type"] == "error" and set(error["error"]) == {"message", "type", "code", "param"}
            assert error["error"]["type"] == "server_error" and error["message"] == error["error"]["message"]
            assert error["sequence_number"] == (len(events) - 1 if before is None else before), events
        # the Responses stream numbers its error with the rest, and the client's event type reads it
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        assert openai.types.responses.ResponseErrorEvent.model_validate(events[-1]).code == "internal_error"


def test_stream_error_event_shape():
    error = APIError(504, "too slow", code="timeout")
    streamer = ResponseEvents({}, "msg", "ig", ImageOptions(), "generate")
    events = streamer.start() + streamer.error(error)
    assert events[-1] == {"type": "error", "sequence_number": 2, "code": "timeout", "message": "too slow",
                          "param": None, "error": {"message": "too slow", "type": "timeout_error", "code": "timeout",
                                                   "param": None}}


# --- browsers and keys ---------------------------------------------------------------------------------------
EVIL = "http://evil.example"


def test_cross_origin_pages_and_foreign_hosts_are_refused(server):
    url, app = server
    port = url.rsplit(":", 1)[1]
    served = app.state.worker.served
    # a "simple" cross-origin POST (no preflight): what any web page can send to a local server
    for path, body in (("/v1/images/generations", {"prompt": "a star"}), ("/api/chat", {"message": "a star"}),
                       ("/v1/responses", {"input": "a star"})):
        status, error = raw(url, "POST", path, json.dumps(body).encode(),
                            {"Content-Type": "text/plain", "Origin": EVIL})
        assert_error(status, error, 403)
        assert error["error"]["code"] == "origin_not_allowed" and "--allow-origin" in error["error"]["message"]
    for origin in ("null", f"http://localhost:{int(port) + 1}", f"https://127.0.0.1:{port}"):
        assert raw(url, "GET", "/v1/models", headers={"Origin": origin})[0] == 403, origin
    # DNS rebinding: the page's own name in Host, its own origin too
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}"):
        for path in ("/health", "/api/session/resp_x", "/"):
            status, error = raw(url, "GET", path, headers={"Host": host, "Origin": f"http://{host}"})
            assert_error(status, error, 403)
            assert error["error"]["code"] == "host_not_allowed" and "--allow-host" in error["error"]["message"]
    assert app.state.worker.served == served                             # nothing was drawn
    # the server's own page, under any loopback name, and clients without an Origin, are served
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
        for origin in (f"http://{host}", f"http://127.0.0.1:{port}", f"http://localhost:{port}", None):
            headers = {"Host": host, **({"Origin": origin} if origin else {})}
            assert raw(url, "GET", "/v1/models", headers=headers)[0] == 200, headers
    assert raw(url, "GET", "/", headers={"Host": f"localhost:{port}"})[0] == 200


def test_allow_origin_and_allow_host(drawing_model):
    config = ServerConfig(session_defaults=DEFAULTS, allowed_origins=("http://app.example:3000",),
                          allowed_hosts=("mybox.local",))
    with serve(drawing_model, config) as (url, _):
        page = {"Origin": "http://app.example:3000"}
        status, headers, r = raw_with_headers(url, "POST", "/v1/images/generations",
                                              json.dumps({"prompt": "a star"}).encode(),
                                              {**page, "Content-Type": "text/plain"})
        assert status == 200 and picture(r["data"][0]["b64_json"]).size == (128, 128)
        assert headers["access-control-allow-origin"] == "http://app.example:3000"     # the page may read it
        status, headers, _ = raw_with_headers(url, "OPTIONS", "/v1/responses", headers={
            **page, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"})
        assert status == 200 and headers["access-control-allow-origin"] == "http://app.example:3000"
        assert raw(url, "GET", "/v1/models", headers={"Origin": "http://app.example:3001"})[0] == 403
        assert raw(url, "GET", "/v1/models", headers={"Origin": EVIL})[0] == 403
        port = url.rsplit(":", 1)[1]
        assert raw(url, "GET", "/v1/models", headers={"Host": f"mybox.local:{port}",
                                                      "Origin": f"http://mybox.local:{port}"})[0] == 200
        assert raw(url, "GET", "/v1/models", headers={"Host": f"MyBox.Local:{port}"})[0] == 200
        assert raw(url, "GET", "/v1/models", headers={"Host": f"other.local:{port}"})[0] == 403


@pytest.mark.parametrize("argv, word", [(["--allow-origin", "app.example"], "--allow-origin"),
                                        (["--allow-origin", "http://app.example/page"], "--allow-origin"),
                                        (["--allow-host", "http://mybox.local"], "--allow-host")])
def test_cli_refuses_malformed_allow_flags(argv, word, capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run_server(parser.parse_args(argv)) == 2
    assert word in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--device", "foo"], "--device 'foo' is not a device torch knows"),
    (["--device", "cuda"], "--device 'cuda': no CUDA GPU is available"),
    (["--threads", "-2"], "--threads must be at least 1, got -2"),
    (["--threads", "0"], "--threads must be at least 1, got 0"),
    (["--max-body-mb", "nan"], "--max-body-mb must be a positive number, got nan"),
    (["--max-body-mb", "inf"], "--max-body-mb must be a positive number, got inf"),
    (["--timeout", "nan"], "--timeout must be a positive number, got nan"),
    (["--queue", "0"], "--queue must be a positive number, got 0"),
    (["--max-words", "0"], "max_words must be an integer in [1, 512]"),
])
def test_cli_refuses_bad_options_in_one_line_before_loading(argv, message, tmp_path, capsys, monkeypatch):
    """Each is one line and exit code 2, before the model loads (the checkpoints named do not exist:
    reaching them would say "cannot load the model" instead). CUDA is made absent for the cuda case."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    parser = argparse.ArgumentParser(prog="mmgen serve")
    add_arguments(parser)
    assert run_server(parser.parse_args(["--checkpoints", str(tmp_path / "none"), *argv])) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mmgen serve: {message}") and err.count("\n") == 1, err


def test_cli_device_names_a_gpu_that_is_there(monkeypatch):
    from mmgen.hardware import device_problem
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert device_problem(None) is None and device_problem("cpu") is None and device_problem("cuda:0") is None
    assert device_problem("cuda:3") == "--device 'cuda:3': no such GPU; torch sees 1 (numbered from 0)"


def test_cli_option_of_the_wrong_kind_is_one_line(capsys):
    from mmgen.cli import main
    with pytest.raises(SystemExit) as e:
        main(["serve", "--threads", "two"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("mmgen serve: argument --threads: invalid int value") and err.count("\n") == 1, err


def test_cli_allow_flags_reach_the_config():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--allow-origin", "http://a.example", "--allow-origin", "https://b.example:8443",
                              "--allow-host", "mybox.local"])
    assert args.allow_origin == ["http://a.example", "https://b.example:8443"] and args.allow_host == ["mybox.local"]


def test_cli_help_says_what_every_option_does_and_its_default():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for action in parser._actions[1:]:                       # after --help
        assert action.help, f"{action.option_strings} has no help"
        if action.default not in (None, [], False):
            assert "default" in action.help, f"{action.option_strings} does not say its default"
    text = " ".join(parser.format_help().split())
    assert "(default 300.0)" in text and "(default 64)" in text and "(default 32.0)" in text


API_ROUTES = [("GET", "/v1/models"), ("GET", "/v1/models/mmgen"), ("POST", "/v1/images/generations"),
              ("POST", "/v1/images/edits"), ("POST", "/v1/responses"), ("GET", "/v1/responses/resp_x"),
              ("DELETE", "/v1/responses/resp_x"), ("POST", "/api/chat"), ("GET", "/api/session/resp_x")]


def test_api_key_on_every_api_route_and_not_on_the_page(server, client, tiny_model):
    url, _ = server
    body = json.dumps({"prompt": "a star", "input": "a star", "message": "a star"}).encode()
    for method, path in API_ROUTES:
        for auth, code in (("", "missing_api_key"), ("Bearer wrong", "invalid_api_key"),
                           ("Basic x", "missing_api_key")):
            status, error = raw(url, method, path, body if method == "POST" else b"", {**JSON, "Authorization": auth})
            assert_error(status, error, 401)
            assert error["error"]["code"] == code, (method, path, auth)
    # the page loads without the key, and learns that it must ask for one
    for path in ("/", "/static/app.js", "/static/style.css", "/health"):
        assert raw(url, "GET", path, headers={"Authorization": ""})[0] == 200, path
    status, config = raw(url, "GET", "/api/config", headers={"Authorization": ""})
    assert status == 200 and config["auth"] is True
    # the official client with api_key= works (every test here uses it); the page's route with the key too
    assert [m.id for m in client.models.list()] == [tiny_model.name]
    status, text = raw(url, "POST", "/api/chat", json.dumps({"message": "hello", "picture": "never"}).encode(), JSON)
    assert status == 200 and sse_events(text)[-1]["type"] == "done"


# --- sizes -------------------------------------------------------------------------------------------------
def test_size_1024_is_the_picture_upscaled_crisply(client):
    small = client.images.generate(prompt="a red circle", size="128x128", extra_body={"seed": 11})
    big = client.images.generate(prompt="a red circle", size="1024x1024", extra_body={"seed": 11})
    assert big.size == "1024x1024" and small.size == "128x128"
    image = picture(big.data[0].b64_json)
    assert image.format == "PNG" and image.size == (1024, 1024)
    assert image.info["mmgen:prompt"] == "a red circle"                    # provenance survives the upscale
    pixels = np.asarray(image.convert("RGB"), np.float64)
    boxed = pixels.reshape(128, 8, 128, 8, 3).mean(axis=(1, 3))            # downsampled by 8, box filter
    original = np.asarray(picture(small.data[0].b64_json).convert("RGB"), np.float64)
    assert original.std() > 5 and np.abs(boxed - original).max() <= 2
    assert pixels.reshape(128, 8, 128, 8, 3).std(axis=(1, 3)).max() == 0   # crisp: each pixel an 8 × 8 block


def border_median(image: np.ndarray) -> np.ndarray:
    border = np.concatenate([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]])
    return np.round(np.median(border, axis=0))


@pytest.mark.parametrize("size", ["1536x1024", "1024x1536"])
def test_non_square_sizes_are_letterboxed_on_the_pictures_background(client, size):
    width, height = map(int, size.split("x"))
    r = client.images.generate(prompt="a blue star", size=size, extra_body={"seed": 12})
    square = client.images.generate(prompt="a blue star", size="1024x1024", extra_body={"seed": 12})
    small = client.images.generate(prompt="a blue star", extra_body={"seed": 12})
    assert r.size == size
    image = np.asarray(picture(r.data[0].b64_json).convert("RGB"))
    assert image.shape == (height, width, 3)
    left, top = (width - 1024) // 2, (height - 1024) // 2
    inner = image[top:top + 1024, left:left + 1024]
    assert np.array_equal(inner, np.asarray(picture(square.data[0].b64_json).convert("RGB")))
    bars = np.concatenate([image[:, :left].reshape(-1, 3), image[:, left + 1024:].reshape(-1, 3),
                           image[:top].reshape(-1, 3), image[top + 1024:].reshape(-1, 3)])
    colour = border_median(np.asarray(picture(small.data[0].b64_json).convert("RGB"), np.float64))
    assert len(bars) == width * height - 1024 * 1024 and (bars == colour).all()


def test_sizes_for_edits_streams_and_the_image_tool(client):
    r = client.images.edit(image=("in.png", png(noise(8)), "image/png"), prompt="make it blue", size="512x512")
    assert r.size == "512x512" and picture(r.data[0].b64_json).size == (512, 512)
    events = list(client.images.generate(prompt="a star", size="256x256", stream=True, partial_images=1))
    assert [picture(e.b64_json).size for e in events] == [(256, 256)] * 2 and events[0].size == "256x256"
    response = client.responses.create(input="draw a star", tool_choice=DRAW,
                                       tools=[{"type": "image_generation", "size": "1024x1536"}])
    call = image_call(response)
    assert call.size == "1024x1536" and picture(call.result).size == (1024, 1536)
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(prompt="a star", size="1792x1024")
    assert e.value.param == "size" and "1024x1024" in e.value.message and "1536x1024" in e.value.message


def test_fit_picture_letterboxes_transparent_pictures_transparent():
    image = Image.new("RGBA", (128, 128), (0, 0, 0, 0))
    image.paste((200, 30, 30, 255), (40, 40, 88, 88))
    out = fit_picture(image, (1536, 1024))
    assert out.mode == "RGBA" and out.size == (1536, 1024)
    a = np.asarray(out)
    assert (a[:, :256] == 0).all() and (a[:, -256:] == 0).all()
    assert (a[40 * 8:88 * 8, 256 + 40 * 8:256 + 88 * 8] == (200, 30, 30, 255)).all()
    assert fit_picture(image, (128, 128)) is image


# --- the one worker: concurrency, queue, timeouts, shutdown ---------------------------------------------------
def test_eight_simultaneous_requests_all_answered(client, server):
    def one(i):
        r = client.images.generate(prompt=f"draw {i} circles", extra_body={"seed": i})
        return picture(r.data[0].b64_json)

    with ThreadPoolExecutor(8) as pool:
        images = list(pool.map(one, range(8)))
    assert len(images) == 8 and all(im.size == (128, 128) for im in images)
    # each answer is its own: the same request alone gives the same picture (no cross-talk on the model)
    alone = client.images.generate(prompt="draw 5 circles", extra_body={"seed": 5})
    assert picture(alone.data[0].b64_json).tobytes() == images[5].tobytes()


def test_full_queue_429_then_timeout_504_then_healthy(drawing_model):
    # one request drawing at a time (no batching), one waiting: the others are refused
    config = ServerConfig(max_queue=1, max_batch=1, timeout=120, session_defaults=DEFAULTS)
    with serve(drawing_model, config) as (url, app):
        client = openai.OpenAI(base_url=url + "/v1", api_key="any", max_retries=0, timeout=120)

        def one(i):
            try:
                client.images.generate(prompt="four at once", n=4, extra_body={"seed": i})
                return 200
            except openai.APIStatusError as e:
                return (e.status_code, e.code)

        with ThreadPoolExecutor(4) as pool:
            outcomes = list(pool.map(one, range(4)))
        assert (429, "queue_full") in outcomes and 200 in outcomes, outcomes
        assert all(o == 200 or o == (429, "queue_full") for o in outcomes), outcomes

        config.timeout = 0.05                                          # read per request
        with pytest.raises(openai.APIStatusError) as e:
            client.images.generate(prompt="too slow", n=4)
        assert e.value.status_code == 504 and e.value.code == "timeout"
        with pytest.raises(openai.APIError):                            # mid-stream: an error event
            list(client.images.generate(prompt="too slow", stream=True, partial_images=3))
        config.timeout = 120
        r = client.images.generate(prompt="in time")                    # the worker dropped the stopped jobs
        assert picture(r.data[0].b64_json).size == (128, 128)
        for _ in range(100):                                            # and goes idle
            if not raw(url, "GET", "/health")[1]["busy"]:
                break
            time.sleep(0.05)
        assert raw(url, "GET", "/health")[1] == {**raw(url, "GET", "/health")[1], "busy": False, "waiting": 0}


def test_worker_shutdown_answers_503():
    async def scenario():
        worker = Worker(max_queue=4)
        worker.start()
        started = threading.Event()

        def slow():
            started.set()
            for i in range(2000):
                time.sleep(0.005)
                yield i

        loop = asyncio.get_running_loop()
        running = worker.submit(slow)
        queued = worker.submit(lambda: iter([1]))
        await asyncio.to_thread(started.wait, 5)
        await asyncio.to_thread(worker.close)
        assert not worker.thread.is_alive()
        for job in (running, queued):
            with pytest.raises(APIError) as e:
                async for _ in job.events(loop.time() + 5, 5):
                    pass
            assert e.value.status == 503
        with pytest.raises(APIError) as e:
            worker.submit(slow)
        assert e.value.status == 503

    asyncio.run(scenario())


def test_revised_prompt_is_the_replys_layout_plan():
    opts, usage = ImageOptions(), Usage()
    plan = "a red circle in the top left and a blue star at the bottom on a white background"
    said = images_response(created=0, pictures=["x"], prompt="red circle top left, blue star below", options=opts,
                           usage=usage, seed=1, text=f"Here you go: {plan}.")
    assert said["data"][0]["revised_prompt"] == plan
    unsaid = images_response(created=0, pictures=["x"], prompt="a circle", options=opts, usage=usage, seed=1,
                             text="Sure, here it is.")
    assert unsaid["data"][0]["revised_prompt"] == "a circle"                      # no plan: the prompt as given
    assert image_call_item("ig", result="x", options=opts, action="generate", text=f"Done: {plan}.")[
        "revised_prompt"] == plan
    assert image_call_item("ig", result="x", options=opts, action="generate")["revised_prompt"] is None


def _held(exchanges: int):
    """A stand-in for a stored session holding that many exchanges (the chain reads only its turns)."""
    from types import SimpleNamespace
    return SimpleNamespace(conversation=SimpleNamespace(turns=tuple(range(2 * exchanges))))


def test_session_store_drops_the_least_recently_used():
    store = SessionStore(cap=2)
    store.put("a", Entry(session=_held(1), response={}, previous=None))
    store.put("b", Entry(session=_held(2), response={}, previous="a"))
    assert store.get("a") is not None                                  # a is now the most recent
    store.put("c", Entry(session=_held(3), response={}, previous="b"))
    assert store.get("b") is None and len(store) == 2
    assert store.chain("c") == [{"id": "c", "previous": "b"}]           # the chain stops where memory does
    assert store.delete("a") and not store.delete("a")


def test_the_chain_skips_the_responses_an_undo_in_words_undid():
    store = SessionStore(cap=10)
    for key, exchanges, previous in (("a", 1, None), ("b", 2, "a"), ("c", 3, "b"), ("u", 2, "c"), ("d", 3, "u")):
        store.put(key, Entry(session=_held(exchanges), response={}, previous=previous))
    assert store.chain("c") == [{"id": "a", "previous": None}, {"id": "b", "previous": "a"},
                                {"id": "c", "previous": "b"}]
    # u undid c: its conversation is b's, so undoing its last exchange goes back to a, and d builds on u
    assert store.chain("u") == [{"id": "a", "previous": None}, {"id": "u", "previous": "a"}]
    assert store.chain("d") == [{"id": "a", "previous": None}, {"id": "u", "previous": "a"},
                                {"id": "d", "previous": "u"}]
    store.put("e", Entry(session=_held(0), response={}, previous="a"))          # undone back to nothing
    assert store.chain("e") == []


def test_cli_serve_env_key_and_graceful_stop(tiny_checkpoints):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    env = {**os.environ, "MMGEN_API_KEY": "env-key"}
    proc = subprocess.Popen([sys.executable, "-m", "mmgen.cli", "serve", "--checkpoints", str(tiny_checkpoints),
                             "--port", str(port), "--threads", "1", "--max-words", "2", "--log-level", "info"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if raw(url, "GET", "/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        assert raw(url, "GET", "/v1/models")[0] == 401                 # the key came from the environment
        status, models = raw(url, "GET", "/v1/models", headers={"Authorization": "Bearer env-key"})
        assert status == 200 and models["data"][0]["id"] == "mmgen-tiny"
        proc.send_signal(signal.SIGTERM)
        # a graceful stop (the worker closed), then uvicorn ends the process by the signal it got
        assert proc.wait(30) in (0, -signal.SIGTERM)
        assert "stopped after serving" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- the shipped checkpoints: the pictures the official client gets back are judged ----------------
@pytest.fixture
def shipped_client(shipped_model):
    with serve(shipped_model, ServerConfig(api_key=KEY)) as (url, _):
        yield openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=300)


def judged(b64: str) -> tuple[str, list[tuple[str, str, str]]]:
    """The judge's reading of a returned picture: its background and (colour, shape, cell) of each shape."""
    found = judge(picture(b64).convert("RGB"))
    return found["background"], sorted((o["color"], o["shape"], o["cell"]) for o in found["objects"])


def red_circle_in_the_center() -> Image.Image:
    return render(place(Scene(objects=(Obj(shape="circle", color="red", size="medium", cell="center"),)),
                        random.Random(0)))


@pytest.mark.parametrize("prompt, background, objects", [
    ("a blue square in the top left", "white", [("blue", "square", "top left")]),
    ("a yellow star on a black background", "black", [("yellow", "star", None)]),
])
def test_shipped_generations_match_their_prompts(shipped_client, prompt, background, objects):
    """Four pictures (seeds 0 and 1, two each), as a person gets them (refined): at least three are
    what the prompt asks for, judged. A sampled picture can miss (a small star the refiner rounds
    off reads as a circle), so one seed alone says little about the model."""
    readings = []
    for seed in (0, 1):
        r = shipped_client.images.generate(prompt=prompt, n=2, extra_body={"seed": seed})
        readings += [judged(d.b64_json) for d in r.data]

    def right(reading) -> bool:
        bg, found = reading
        return bg == background and len(found) == len(objects) and all(
            (color, shape) == want[:2] and want[2] in (None, cell) for (color, shape, cell), want in zip(found, objects))
    assert sum(map(right, readings)) >= 3, (prompt, readings)


def test_shipped_edits_with_and_without_a_mask_are_judged(shipped_client):
    image = ("in.png", png(red_circle_in_the_center()), "image/png")
    r = shipped_client.images.edit(image=image, prompt="make the circle blue", extra_body={"seed": 0})
    assert judged(r.data[0].b64_json) == ("white", [("blue", "circle", "center")])
    # a mask over the top-left corner: the star is drawn there, the circle is kept
    alpha = np.full((128, 128), 255, np.uint8)
    alpha[:48, :48] = 0
    mask = ("mask.png", png(Image.fromarray(np.dstack([np.zeros((128, 128, 3), np.uint8), alpha]), "RGBA")),
            "image/png")
    r = shipped_client.images.edit(image=image, mask=mask, prompt="add a green star at the top left",
                                   extra_body={"seed": 0})
    assert judged(r.data[0].b64_json) == ("white", [("green", "star", "top left"), ("red", "circle", "center")])


def test_shipped_stream_ends_in_a_judged_picture(shipped_client):
    events = list(shipped_client.images.generate(prompt="a blue square in the top left", stream=True,
                                                 partial_images=2, extra_body={"seed": 1}))
    assert [e.type for e in events] == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
    assert judged(events[-1].b64_json) == ("white", [("blue", "square", "top left")])
