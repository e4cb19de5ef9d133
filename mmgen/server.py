"""`mmgen serve`: an OpenAI-compatible HTTP API and a chat page, on one model.

    mmgen serve                                  # http://127.0.0.1:8000/  (the page), /v1/... (the API)
    mmgen serve --port 9000 --api-key secret --checkpoints checkpoints/

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="secret")
    client.images.generate(prompt="a red circle at the top left", n=2)            # b64_json PNGs, 128×128
    client.images.edit(image=open("in.png", "rb"), prompt="make it blue", mask=open("mask.png", "rb"))
    r = client.responses.create(input="draw a star", tools=[{"type": "image_generation"}])
    r = client.responses.create(input="make it blue", previous_response_id=r.id,     # keep editing
                                tools=[{"type": "image_generation"}])

Endpoints
    POST /v1/images/generations   prompt, n 1–4, size (128x128, auto, or 256x256 … 1024x1024, 1536x1024,
                                  1024x1536: upscaled, letterboxed), background, output_format, seed,
                                  stream + partial_images 0–3 (image_generation.* events)
    POST /v1/images/edits         multipart image (or image[]: one picture), prompt, mask; image_edit.* events
    POST /v1/responses            input (text, or messages with input_image), tools [image_generation],
                                  previous_response_id, stream; GET/DELETE /v1/responses/{id}
    GET  /v1/models, /v1/models/{id}
    POST /api/chat                the page's turn: SSE of words, a preview per row, the reply
    GET  /api/session/{id}        a stored conversation (pictures decoded), for the page to restore
    GET  /health, /api/config     no key needed

Browsers: any web page can send requests to a local server and, by DNS rebinding, read the answers,
so requests whose Origin is not the server's own, or whose Host does not name it, are refused (403)
unless allowed with --allow-origin / --allow-host (BrowserGuard). Clients outside a browser send no
Origin and are not affected. With --api-key every API route needs the key; the page asks for it.

The model is not thread-safe, so all model work (generation, encoding an upload, decoding a history)
runs in turns under one worker, fed by a bounded queue (server_worker.py): up to --batch requests
draw at once, their transformer passes shared (continuous batching, batching.py: a request that
arrives while others draw joins at the next pass, each with its own seed and settings), the rest
wait in order; a full queue answers 429, a request past its timeout is stopped between tokens and
answered 504, and shutdown answers what is still queued with 503. Conversations live in memory,
keyed by response id, least recently used dropped first; a stored conversation is never changed —
a new turn forks it — so any earlier response can be continued (branching), and undo is going back
to the previous id. The OpenAI shapes (options, uploads, masks, responses, events) are in
server_api.py.
"""
from __future__ import annotations

import argparse
import asyncio
import hmac
import ipaddress
import logging
import os
import re
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Iterator
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from .server_api import (SIZES, APIError, ImageOptions, ResponseEvents, ResponsesInput, Usage, apply_mask,
                         b64_picture, bad_request, check_prompt, checked_text, completed_event, decode_data_url,
                         fit_picture,
                         get_choice, get_str, image_call_item, images_response, message_item, new_id,
                         parse_image_options, parse_json_object, parse_responses_request, partial_image_event,
                         read_mask, read_picture, response_object, sse)
from .batching import Batch, BatchStats
from .server_worker import ClientGone, Entry, Job, SessionStore, Worker
from .inputs import MAX_MESSAGE_CHARS
from .session import REPLY_RESERVE, ChatSession, SessionError
from .settings import PICTURE_MODES, Settings, setting_help
from .stream import IMAGE_SIDE, IMAGE_TOKENS, Conversation, StreamError

log = logging.getLogger("mmgen.server")
WEB_DIR = Path(__file__).resolve().parent / "web"
ALL_ROWS = "all"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass
class ServerConfig:
    api_key: str | None = None
    max_body_bytes: int = 32 * 2**20
    max_prompt_chars: int = MAX_MESSAGE_CHARS
    timeout: float = 300.0               # seconds from a request's arrival to its last byte
    max_queue: int = 64                  # requests waiting for the model (those drawing not counted)
    max_batch: int = 16                  # requests drawing at once, their passes shared (batching.py)
    max_sessions: int = 256              # conversations kept for previous_response_id
    session_defaults: dict = field(default_factory=dict)     # Settings for new conversations, e.g. max_words
    allowed_origins: tuple[str, ...] = ()    # web pages (scheme://host[:port], or "*") that may use the API
    allowed_hosts: tuple[str, ...] = ()      # more names (or "*") the server answers to in the Host header


# --- one turn on the worker ---------------------------------------------------------------------------
@dataclass
class TurnRequest:
    """What a request asks the model for: one message (and picture) in a new or a stored conversation."""
    text: str
    options: ImageOptions
    picture: str = "always"                  # the Images API always draws; the Responses API follows its tools
    image: Image.Image | None = None
    mask: Image.Image | None = None         # alpha (mode L): 255 keep the given picture, 0 take the new one
    base: ChatSession | None = None          # a stored conversation to continue (forked)
    previews: dict | str | None = None       # rows → partial index, ALL_ROWS, or None
    defaults: dict = field(default_factory=dict)
    text_param: str = "prompt"               # the request's field holding `text`, named in errors about it


@dataclass
class TurnResult:
    session: ChatSession
    text: str
    pictures: list[str]          # base64, in the requested format, with provenance metadata
    usage: Usage
    seed: int | None
    image_id: str | None


def run_turn(model, turn: TurnRequest, decoders=None) -> Iterator[tuple]:
    """Runs on the worker: yields ("text", words so far), ("preview", words, rows, index, b64),
    then ("done", TurnResult). `decoders`: the job's lanes into the shared batch (batching.Lanes)."""
    opts = turn.options
    session = turn.base.fork() if turn.base is not None else model.chat(seed=opts.seed, **turn.defaults)
    words, word_ids, reply = "", 0, None
    preview_meta = {"Software": "mmgen", "mmgen:model": model.name, "mmgen:prompt": turn.text, "mmgen:partial": "true"}
    # a mask is a region edit on the codes (only the patches under alpha 0 are redrawn), and the
    # kept region's original pixels are pasted back on top (apply_mask) so they stay exact
    region = Image.merge("LA", (turn.mask, turn.mask)) if turn.mask is not None else None

    def finished(image: Image.Image) -> Image.Image:     # the mask's kept pixels back, then the size asked for
        image = apply_mask(image, turn.image, turn.mask) if turn.mask is not None else image
        return fit_picture(image, opts.pixels)

    try:
        for event in session.stream(turn.text, turn.image, n=opts.n, seed=opts.seed, picture=turn.picture,
                                    mask=region, previews=bool(turn.previews), decoders=decoders,
                                    **opts.settings):
            if event.kind == "text":
                words, word_ids = event.text, word_ids + 1       # one event per word id of the first reply
                yield ("text", words)
            elif event.kind == "preview":
                index = event.rows - 1 if turn.previews == ALL_ROWS else turn.previews.get(event.rows)
                if index is None:
                    continue
                yield ("preview", words, event.rows, index,
                       b64_picture(finished(event.image), opts.output_format, preview_meta))
            elif event.kind == "done":
                reply = event.reply
    except SessionError as e:
        raise session_refusal(e, turn.text_param) from None
    if reply is None:
        raise RuntimeError("the reply ended without finishing")
    if turn.picture == "always" and len(reply.images) != opts.n:
        raise RuntimeError(f"asked for {opts.n} pictures, the model finished {len(reply.images)}")
    # each picture of a batch (n) with its own provenance id (Reply.metadata)
    pictures = [b64_picture(finished(im), opts.output_format, reply.metadata(i), provenance=reply.provenance)
                for i, im in enumerate(reply.images)]
    yield ("done", TurnResult(session=session, text=reply.text, pictures=pictures, seed=reply.seed,
                              usage=count_usage(model, session, word_ids, opts.n, len(pictures)),
                              image_id=reply.id if pictures else None))


def session_refusal(e: SessionError, text_param: str) -> APIError:
    """A session's refusal as a 400. The one about length (the session raises it from the stream's
    StreamError, whose context it keeps) names the field that holds the message."""
    if isinstance(e.__context__, StreamError):
        return APIError(400, str(e), code="context_length_exceeded", param=text_param)
    return bad_request(str(e))


def count_usage(model, session: ChatSession, word_ids: int, n: int, pictures: int) -> Usage:
    """Stream ids the model read (the fitted conversation before its reply, as generation encoded it)
    and wrote: words, <image> + 256 codes + </image> per picture, <eot>. Words are counted on the
    first reply; a batch of n is counted as n replies of that length."""
    stream = model.stream
    before = Conversation(session.conversation.turns[:-1])
    fitted = stream.fit(before, model.context, reserve=REPLY_RESERVE)
    ids = stream.encode(fitted, generation_prompt=True).ids
    image_in = sum(1 for i in ids if stream.is_image_id(i))
    return Usage(input_text=len(ids) - image_in, input_image=image_in,
                 output_text=n * (word_ids + 1) + 2 * pictures, output_image=IMAGE_TOKENS * pictures)


def batch_figures(stats: BatchStats) -> dict:
    """What /health says of the shared passes: how many, and how many requests they held."""
    return {"passes": stats.passes, "largest": stats.largest,
            "mean": round(stats.lanes_fed / stats.passes, 2) if stats.passes else 0.0}


def history_of(model, entry: Entry) -> list[dict]:
    """Runs on the worker (decoding uses the model): the conversation's turns, pictures as PNG."""
    turns, prompt = [], ""
    for item in entry.session.history:
        picture = None
        if item.image is not None:
            meta = {"Software": "mmgen", "mmgen:model": model.name, "mmgen:prompt": prompt,
                    "mmgen:seed": str(item.seed), "mmgen:id": item.id or ""}
            picture = b64_picture(item.image, "png", meta, provenance=entry.session.settings.provenance)
        if item.role == "user":
            prompt = item.text
        turns.append({"role": item.role, "text": item.text, "image": picture, "id": item.id, "seed": item.seed})
    return turns


# --- request body limit ---------------------------------------------------------------------------------
class BodyTooLarge(Exception):
    pass


DRAIN_LIMIT = 64 * 2**20       # an oversized body up to this is read and dropped, so the client sees the 413


class BodyLimit:
    """ASGI middleware: refuse bodies over `max_bytes` with 413, by Content-Length or while reading."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return await error_response(bad_request("Content-Length is not a number"))(scope, receive, send)
            if declared > self.max_bytes:
                # read and drop the body first: answering mid-upload makes the client see a reset, not the 413
                if declared <= DRAIN_LIMIT:
                    more = True
                    while more:
                        message = await receive()
                        more = message.get("type") == "http.request" and message.get("more_body", False)
                return await error_response(too_large(self.max_bytes))(scope, receive, send)
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            if message.get("type") == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge()
            return message

        await self.app(scope, limited, send)


def too_large(max_bytes: int) -> APIError:
    return APIError(413, f"the request body is larger than the server's limit of {max_bytes / 2**20:g} MB",
                    code="request_too_large")


def error_response(error: APIError):
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


# --- browsers: whose pages may use the server, under which names ------------------------------------------
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
DEFAULT_PORTS = {"http": 80, "https": 443}
ANY = "*"                      # --allow-origin '*' / --allow-host '*': no check at all (an explicit choice)
Origin = tuple[str, str, int]  # (scheme, host, port): what the browser's same-origin rule compares


def parse_origin(value: str) -> Origin | None:
    """'scheme://host[:port]' → (scheme, host lowercased, port); None if it is no web origin ("null",
    a path, a user name, another scheme)."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or parts.username is not None:
        return None
    return parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme]


def origin_text(origin: Origin) -> str:
    """An origin as browsers write it in the Origin header (default port left out, IPv6 in brackets)."""
    scheme, host, port = origin
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" if port == DEFAULT_PORTS[scheme] else f"{scheme}://{host}:{port}"


def parse_host(value: str, scheme: str) -> tuple[str, int] | None:
    """A Host header, 'name[:port]' (IPv6 in brackets) → (name lowercased, port); None if unreadable."""
    if not value or any(c in value for c in "/?#@\\ "):
        return None
    origin = parse_origin(f"{scheme}://{value}")
    return (origin[1], origin[2]) if origin else None


def host_name(value: str) -> str:
    """An --allow-host value as parse_host reads names: lowercased, IPv6 brackets off."""
    return value.strip().lower().removeprefix("[").removesuffix("]")


HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")


def is_host_name(value: str) -> bool:
    """A DNS name or an IP address (an --allow-host value)."""
    return is_address(value) or HOST_NAME.fullmatch(host_name(value)) is not None


class BrowserGuard:
    """ASGI middleware: what web pages in a browser may do with this server.

    A browser lets any page send a POST to any address, loopback included — a "simple" one (e.g.
    Content-Type text/plain) goes without a CORS preflight — and it tells the server the page's
    Origin. A page can also reach the server under a name of its own by DNS rebinding, and then read
    the answers too; its requests then carry that name in Host. So, with 403 otherwise:

      Host    names this server: the address the connection came in on, a loopback name, or a name
              allowed with --allow-host (any port: tunnels and proxies change it)
      Origin  when present, is the server's own: the origin of the Host the request was sent to (the
              page this server served), the address it listens on (on loopback, any loopback name) on
              its port, or one allowed with --allow-origin

    Clients outside a browser (curl, the openai package) send no Origin; Host is all they need."""

    def __init__(self, app, allowed_origins=(), allowed_hosts=()):
        self.app = app
        self.any_origin = ANY in allowed_origins
        self.origins = {o for o in map(parse_origin, allowed_origins) if o is not None}
        self.any_host = ANY in allowed_hosts
        self.hosts = {host_name(h) for h in allowed_hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        error = self.refusal(scope)
        if error is not None:
            return await error_response(error)(scope, receive, send)
        await self.app(scope, receive, send)

    def refusal(self, scope) -> APIError | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
                   if k.lower() in (b"host", b"origin")}
        scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
        address, port = scope.get("server") or (None, None)      # where the connection came in
        own = {address.lower()} if address else set()
        if not own or any(map(is_loopback, own)):
            own |= LOOPBACK_NAMES          # on loopback, localhost, 127.0.0.1 and [::1] are one server
        host = parse_host(headers["host"], scheme) if "host" in headers else None
        return self.host_refusal(headers.get("host"), host, own) or \
            self.origin_refusal(headers.get("origin"), scheme, host, own, port)

    def host_refusal(self, value: str | None, host, own: set[str]) -> APIError | None:
        if value is None or self.any_host:          # no Host at all: HTTP/1.0, never a browser
            return None
        if host is not None and host[0] in own | LOOPBACK_NAMES | self.hosts:
            return None
        return APIError(403, f"this server does not answer to the name {value!r:.80} (Host header): a web page "
                             "may be using it through DNS rebinding. Start it with --allow-host NAME to use it "
                             "under that name", code="host_not_allowed")

    def origin_refusal(self, value: str | None, scheme: str, host, own: set[str], port) -> APIError | None:
        if value is None or self.any_origin:
            return None
        same = {(scheme, *host)} if host is not None else set()        # the page this server served
        if port is not None:
            same |= {(scheme, name, port) for name in own}
        origin = parse_origin(value)
        if origin is not None and (origin in same or origin in self.origins):
            return None
        return APIError(403, f"requests from the web page at {value!r:.80} are refused: only pages served by this "
                             f"server may use it from a browser. Start the server with --allow-origin {value:.80} "
                             "to allow that page", code="origin_not_allowed")


# --- the app ---------------------------------------------------------------------------------------------
def create_app(model, config: ServerConfig | None = None):
    """The FastAPI app serving `model` (an mmgen.MMGen). Its worker starts and stops with the app."""
    config = config or ServerConfig()
    # the transformer's shared passes: two rows a request (its guidance twin); one of n pictures takes
    # 2n and waits for them. A stand-in model without a transformer (tests) has nothing to share.
    lm = getattr(model, "lm", None)
    batch = Batch(lm, rows=max(2 * config.max_batch, 8), filler=model.stream.pad) if lm is not None else None
    worker = Worker(config.max_queue, batch=batch, max_active=config.max_batch)
    store = SessionStore(config.max_sessions)
    started = int(time.time())
    names = {model.name, "mmgen"}

    @asynccontextmanager
    async def lifespan(app):
        worker.start()
        log.info("serving %s", model.name)
        yield
        await asyncio.to_thread(worker.close)
        log.info("stopped after serving %d requests", worker.served)

    app = FastAPI(title="mmgen", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.mmgen = config
    app.state.worker, app.state.store = worker, store
    # outermost last: refuse foreign pages and names before anything else; then CORS headers, so that
    # pages allowed with --allow-origin can read the answers; then the body limit
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    if config.allowed_origins:
        origins = [ANY] if ANY in config.allowed_origins else \
            [origin_text(o) for o in map(parse_origin, config.allowed_origins) if o is not None]
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["*"])
    app.add_middleware(BrowserGuard, allowed_origins=config.allowed_origins, allowed_hosts=config.allowed_hosts)

    # --- errors: every one in OpenAI's shape, never a traceback ---
    @app.exception_handler(APIError)
    async def api_error(request, exc: APIError):
        return error_response(exc)

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(request, exc):
        return error_response(too_large(config.max_body_bytes))

    @app.exception_handler(ClientGone)
    async def client_gone(request, exc):
        return Response(status_code=499)          # nobody is listening; the status is for the access log

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return error_response(bad_request(f"invalid request: {first.get('msg', 'bad input')}", param))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc: StarletteHTTPException):
        if exc.status_code == 404:
            message, code = f"unknown path: {request.method} {request.url.path}", "not_found"
        elif exc.status_code == 405:
            message, code = f"{request.method} is not allowed on {request.url.path}", "method_not_allowed"
        else:
            message, code = str(exc.detail), None
        return error_response(APIError(exc.status_code, message, code=code))

    @app.exception_handler(Exception)
    async def unexpected(request, exc):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(APIError(500, "internal server error; the server log has the details",
                                       code="internal_error"))

    # --- access ---
    # With a key, every API route needs it, the page's own (/api/chat, /api/session) included; the page,
    # its files, /api/config and /health do not (they hold nothing private, and the page must load to
    # ask for the key): /api/config says a key is needed, the page asks for it, keeps it in the
    # browser's localStorage and sends it as any client does. Requests are not exempted for looking
    # like the page's own: Origin and Sec-Fetch-* are only trustworthy from browsers, and anything
    # else can send them, so such an exemption would be a way around the key.
    def require_key(request: Request) -> None:
        if not config.api_key:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise APIError(401, "no API key given: send 'Authorization: Bearer KEY'", code="missing_api_key")
        if not hmac.compare_digest(token.strip().encode(), config.api_key.encode()):
            raise APIError(401, "incorrect API key", code="invalid_api_key")

    auth = [Depends(require_key)]

    def check_model(body: dict) -> None:
        name = body.get("model")
        if name is not None and name not in names:
            raise APIError(404, f"the model {name!r:.80} does not exist; this server serves {model.name!r}",
                           code="model_not_found", param="model")

    def deadline() -> float:
        return asyncio.get_running_loop().time() + config.timeout

    def submit(turn: TurnRequest) -> Job:
        return worker.submit(lambda lanes: run_turn(model, turn, lanes), batched=True)

    async def started(job: Job, until: float, request: Request) -> AsyncIterator:
        """The job's items, once its first has come. A stream's headers say 200, so whatever fails before
        the model's first item (a message too long for the context, the deadline passing in the queue)
        is raised here and answered with its own status; what fails later is an error event."""
        streaming = False

        async def still_wanted() -> bool:       # once streaming, Starlette watches the client itself
            return streaming or not await request.is_disconnected()

        items = job.events(until, config.timeout, still_wanted)
        first = await anext(items, None)
        if first is None:          # ended without an item: stopped (shutdown), as Job.result says
            raise APIError(503, "the request was stopped before it started", code="shutting_down")
        streaming = True

        async def all_items():
            yield first
            async for item in items:
                yield item
        return all_items()

    # --- pages and status ---
    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    @app.get("/health")
    async def health():
        return {"status": "ok" if not worker.closed and worker.thread.is_alive() else "stopping",
                "model": model.name, "waiting": worker.waiting, "max_queue": config.max_queue,
                "busy": worker.busy, "drawing": len(worker.active), "served": worker.served,
                "sessions": len(store), "batch": batch_figures(batch.stats) if batch is not None else None}

    @app.get("/api/config")
    async def page_config():
        return {"model": model.name, "auth": bool(config.api_key), "max_prompt_chars": config.max_prompt_chars,
                "max_body_bytes": config.max_body_bytes, "size": "128x128", "sizes": list(SIZES)}

    # --- models ---
    def model_card() -> dict:
        return {"id": model.name, "object": "model", "created": started, "owned_by": "mmgen"}

    @app.get("/v1/models", dependencies=auth)
    async def list_models():
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id}", dependencies=auth)
    async def get_model(model_id: str):
        if model_id not in names:
            raise APIError(404, f"the model {model_id!r:.80} does not exist; this server serves {model.name!r}",
                           code="model_not_found", param="model")
        return model_card()

    # --- images ---
    async def images_reply(request: Request, turn: TurnRequest, prompt: str, kind: str):
        opts, job, until = turn.options, submit(turn), deadline()
        if opts.stream:
            items = await started(job, until, request)

            async def events():
                sent = 0
                try:
                    async for item in items:
                        if item[0] == "preview":
                            yield sse(partial_image_event(kind, b64=item[4], index=item[3], options=opts),
                                      f"{kind}.partial_image")
                            sent += 1
                        elif item[0] == "done":
                            for picture in item[1].pictures:
                                yield sse(completed_event(kind, b64=picture, options=opts, usage=item[1].usage),
                                          f"{kind}.completed")
                                sent += 1
                except APIError as e:
                    yield sse(e.event(sent), "error")
            return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)
        result = (await job.result(until, config.timeout, request))[1]
        return images_response(created=int(time.time()), pictures=result.pictures, prompt=prompt, options=opts,
                               usage=result.usage, seed=result.seed, text=result.text)

    @app.post("/v1/images/generations", dependencies=auth)
    async def generations(request: Request):
        body = parse_json_object(await request.body())
        check_model(body)
        prompt = check_prompt(body, config.max_prompt_chars)
        opts = parse_image_options(body, defaults=config.session_defaults)
        turn = TurnRequest(text=prompt, options=opts, previews=opts.preview_rows(), defaults=config.session_defaults)
        return await images_reply(request, turn, prompt, "image_generation")

    @app.post("/v1/images/edits", dependencies=auth)
    async def edits(request: Request):
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            async with request.form(max_files=20, max_fields=100) as form:
                uploads = form.getlist("image") + form.getlist("image[]")
                for value in uploads:
                    if not isinstance(value, UploadFile):
                        raise bad_request("'image' must be a file upload (multipart file field)", "image")
                datas = [await u.read() for u in uploads]
                mask_file = form.get("mask")
                if mask_file is not None and not isinstance(mask_file, UploadFile):
                    raise bad_request("'mask' must be a file upload (multipart file field)", "mask")
                mask_data = await mask_file.read() if mask_file is not None else None
                fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
            is_form = True
        elif content_type.startswith("application/json"):
            # OpenAI's JSON form of an edit: images: [{"image_url": "data:..."}], mask: {"image_url": ...}
            fields = parse_json_object(await request.body())
            listed = fields.get("images")
            if listed is not None and not isinstance(listed, list):
                raise bad_request("'images' must be a list of {\"image_url\": data URL}", "images", code="invalid_type")
            datas = [decode_data_url(x.get("image_url") if isinstance(x, dict) else None, f"images[{i}].image_url")
                     for i, x in enumerate(listed or [])]
            mask_field = fields.get("mask")
            mask_data = decode_data_url(mask_field.get("image_url") if isinstance(mask_field, dict) else mask_field,
                                        "mask.image_url") if mask_field is not None else None
            is_form = False
        else:
            raise bad_request("send the edit as multipart/form-data (image, prompt, mask) or as JSON with images "
                              "as data URLs", code="unsupported_content_type")
        check_model(fields)
        prompt = check_prompt(fields, config.max_prompt_chars)
        if not datas:
            raise bad_request("'image' is required: the picture to edit", "image", code="missing_required_parameter")
        if len(datas) > 1:
            raise bad_request(f"this model edits one picture at a time; got {len(datas)}", "image")
        opts = parse_image_options(fields, form=is_form, defaults=config.session_defaults)
        image = read_picture(datas[0], "image")
        mask = read_mask(mask_data, image) if mask_data is not None else None
        turn = TurnRequest(text=prompt, options=opts, image=image, mask=mask, previews=opts.preview_rows(),
                           defaults=config.session_defaults)
        return await images_reply(request, turn, prompt, "image_edit")

    # --- conversations: the Responses API, and the page's own turn endpoint ---
    def stored(previous, param: str = "previous_response_id") -> Entry | None:
        if previous is None:
            return None
        if not isinstance(previous, str):
            raise bad_request(f"'{param}' must be a string", param, code="invalid_type")
        entry = store.get(previous)
        if entry is None:
            raise APIError(404, f"no stored response {previous!r:.80}: it never existed, was deleted, or was dropped "
                                f"(the server keeps the last {config.max_sessions} conversations in memory)",
                           code="previous_response_not_found", param=param)
        return entry

    def start_conversation_turn(req: ResponsesInput, previous: str | None, entry: Entry | None, previews,
                                text_param: str):
        earlier = entry is not None and entry.session.conversation.last_image_index() is not None
        has_picture = req.image is not None or earlier
        ids = {"response": new_id("resp"), "message": new_id("msg"), "image": new_id("ig"),
               "action": "edit" if has_picture else "generate"}
        turn = TurnRequest(text=req.text, options=req.options, picture=req.picture, image=req.image,
                           base=entry.session if entry else None, previews=previews,
                           defaults=config.session_defaults, text_param=text_param)
        job = submit(turn)

        def finish(result: TurnResult, with_message: bool) -> dict:
            output = [message_item(ids["message"], result.text)] if with_message else []
            if result.pictures:
                output.append(image_call_item(ids["image"], result=result.pictures[0], options=req.options,
                                              action=ids["action"], text=result.text))
            response = response_object(response_id=ids["response"], model=model.name, created_at=int(time.time()),
                                       status="completed", output=output, request=req, previous=previous,
                                       usage=result.usage)
            response["mmgen"] = {"seed": result.seed, "image_id": result.image_id}
            store.put(ids["response"], Entry(session=result.session, response=response, previous=previous))
            return response

        def skeleton() -> dict:
            return response_object(response_id=ids["response"], model=model.name, created_at=int(time.time()),
                                   status="in_progress", output=[], request=req, previous=previous, usage=None)
        return job, ids, finish, skeleton

    @app.post("/v1/responses", dependencies=auth)
    async def responses(request: Request):
        body = parse_json_object(await request.body())
        check_model(body)
        previous = body.get("previous_response_id")
        entry = stored(previous)
        req = parse_responses_request(body, config.max_prompt_chars, defaults=config.session_defaults)
        job, ids, finish, skeleton = start_conversation_turn(req, previous, entry, req.options.preview_rows(),
                                                             text_param="input")
        until = deadline()
        if req.options.stream:
            items = await started(job, until, request)
            streamer = ResponseEvents(skeleton(), ids["message"], ids["image"], req.options, ids["action"])

            async def events():
                for e in streamer.start():
                    yield sse(e, e["type"])
                try:
                    async for item in items:
                        if item[0] == "text":
                            out = streamer.text(item[1])
                        elif item[0] == "preview":
                            out = streamer.partial(item[1], item[4], item[3])
                        else:
                            result = item[1]
                            response = finish(result, streamer.message_open or bool(result.text))
                            final = result.pictures[0] if result.pictures else None
                            out = streamer.finish(result.text, final, response)
                        for e in out:
                            yield sse(e, e["type"])
                except APIError as e:
                    for event in streamer.error(e):
                        yield sse(event, "error")
            return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)
        result = (await job.result(until, config.timeout, request))[1]
        return finish(result, bool(result.text))

    @app.get("/v1/responses/{response_id}", dependencies=auth)
    async def get_response(response_id: str):
        return stored(response_id, "response_id").response

    @app.delete("/v1/responses/{response_id}", dependencies=auth)
    async def delete_response(response_id: str):
        if not store.delete(response_id):
            stored(response_id, "response_id")      # the 404
        return {"id": response_id, "object": "response", "deleted": True}

    @app.post("/api/chat", dependencies=auth)
    async def page_chat(request: Request):
        """The page's turn: {message, image?: data URL, previous_response_id?, picture?, background?, seed?, cfg?,
        temperature?} → SSE of {"type": "text"|"preview"|"done"|"error"}; every row of the picture is previewed."""
        body = parse_json_object(await request.body())
        previous = body.get("previous_response_id")
        entry = stored(previous)
        text = checked_text(get_str(body, "message", ""), "the message", "message", config.max_prompt_chars,
                            allow_empty=True)
        image = read_picture(decode_data_url(body["image"], "image"), "image") if body.get("image") else None
        if not text.strip() and image is None:
            raise bad_request("the message is empty", "message")
        picture = get_choice(body, "picture", PICTURE_MODES, Settings.picture)
        opts = parse_image_options({k: v for k, v in body.items() if k in ("background", "seed", "cfg", "temperature")},
                                   allow_n=False, defaults=config.session_defaults)
        req = ResponsesInput(text=text, image=image, picture=picture, options=opts,
                             tools=[{"type": "image_generation"}], tool_choice="auto")
        job, ids, finish, _ = start_conversation_turn(req, previous, entry, ALL_ROWS, text_param="message")
        items = await started(job, deadline(), request)

        async def events():
            sent = 0
            try:
                async for item in items:
                    if item[0] == "text":
                        yield sse({"type": "text", "text": item[1]})
                    elif item[0] == "preview":
                        yield sse({"type": "preview", "rows": item[2], "of": IMAGE_SIDE, "image": item[4]})
                    else:
                        result = item[1]
                        response = finish(result, bool(result.text))
                        yield sse({"type": "done", "id": ids["response"], "previous_response_id": previous,
                                   "text": result.text, "image": result.pictures[0] if result.pictures else None,
                                   "image_id": result.image_id, "seed": result.seed,
                                   "background": opts.resolved_background, "usage": response["usage"]})
                    sent += 1
            except APIError as e:
                yield sse(e.event(sent))
        return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)

    @app.get("/api/session/{response_id}", dependencies=auth)
    async def page_session(request: Request, response_id: str):
        entry = stored(response_id, "response_id")

        def work():          # decoding the pictures uses the model: on the worker, like everything else
            yield history_of(model, entry)
        job = worker.submit(work)
        turns = await job.result(deadline(), config.timeout, request)
        return {"id": response_id, "previous_response_id": entry.previous, "chain": store.chain(response_id),
                "turns": turns}

    return app


# --- command line -------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--checkpoints", default=None, help="checkpoints folder (default: the shipped one)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    parser.add_argument("--api-key", default=os.environ.get("MMGEN_API_KEY"),
                        help="require 'Authorization: Bearer KEY' (default: $MMGEN_API_KEY; none: open)")
    parser.add_argument("--allow-origin", action="append", default=[], metavar="URL",
                        help="let the web page at URL (scheme://host[:port]) use the API from a browser; "
                             "repeatable; '*': any page (default: only the server's own page)")
    parser.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                        help="answer to NAME in the Host header too (a name the server is reached by); "
                             "repeatable; '*': any name, which turns the DNS-rebinding check off "
                             "(default: the listening address and loopback names)")
    parser.add_argument("--max-body-mb", type=float, default=32.0, help="largest request body (MB)")
    parser.add_argument("--max-prompt-chars", type=int, default=MAX_MESSAGE_CHARS,
                        help=f"longest message (default {MAX_MESSAGE_CHARS})")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per request, queueing included")
    parser.add_argument("--queue", type=int, default=64, help="requests that may wait for the model")
    parser.add_argument("--batch", type=int, default=16,
                        help="requests drawn at once, sharing the transformer's passes (default 16; 1: one at a time)")
    parser.add_argument("--max-sessions", type=int, default=256, help="conversations kept in memory")
    parser.add_argument("--max-words", type=int, default=None,
                        help=setting_help("max_words", "longest reply in text tokens before its picture"))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))


def is_address(host: str) -> bool:
    """An IP address (a bind address like 0.0.0.0 included), not a host name."""
    try:
        ipaddress.ip_address(host_name(host))
        return True
    except ValueError:
        return False


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    import sys

    import torch
    import uvicorn

    import mmgen
    if not 0 < args.port < 65536:
        print(f"--port must be in 1..65535, got {args.port}", file=sys.stderr)
        return 2
    limits = {"--max-body-mb": args.max_body_mb, "--timeout": args.timeout, "--queue": args.queue,
              "--max-sessions": args.max_sessions, "--max-prompt-chars": args.max_prompt_chars, "--batch": args.batch}
    for flag, value in limits.items():
        if value <= 0:
            print(f"{flag} must be positive, got {value}", file=sys.stderr)
            return 2
    for origin in args.allow_origin:
        if origin != ANY and parse_origin(origin) is None:
            print(f"--allow-origin must be scheme://host[:port] (as a browser's address bar shows it) or '*', "
                  f"got {origin!r}", file=sys.stderr)
            return 2
    for name in args.allow_host:
        if name != ANY and not is_host_name(name):
            print(f"--allow-host must be a host name or address (no scheme, no path) or '*', got {name!r}",
                  file=sys.stderr)
            return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model = mmgen.load(args.checkpoints, device=args.device)
    except (FileNotFoundError, ValueError, OSError) as e:
        print(f"cannot load the model: {e}", file=sys.stderr)
        return 2
    defaults = {"max_words": args.max_words} if args.max_words else {}
    try:
        ChatSession(model, **defaults)
    except SessionError as e:
        print(str(e), file=sys.stderr)
        return 2
    config = ServerConfig(api_key=args.api_key or None, max_body_bytes=int(args.max_body_mb * 2**20),
                          max_prompt_chars=args.max_prompt_chars, timeout=args.timeout, max_queue=args.queue,
                          max_batch=args.batch,
                          max_sessions=args.max_sessions, session_defaults=defaults,
                          allowed_origins=tuple(args.allow_origin),
                          allowed_hosts=tuple(args.allow_host) + ((args.host,) if not is_address(args.host) else ()))
    if not is_loopback(args.host):
        if not config.api_key:
            print(f"warning: listening on {args.host} without an API key: anyone who can reach it can use the model "
                  "(set --api-key or MMGEN_API_KEY)", file=sys.stderr)
        print("note: clients must name the server by its address or a loopback name (the Host header); add "
              "--allow-host NAME for each host name it is reached by", file=sys.stderr)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    print(f"mmgen: serving {model.name} at http://{args.host}:{args.port}/  (API: /v1)", flush=True)
    server = uvicorn.Server(uvicorn.Config(create_app(model, config), host=args.host, port=args.port,
                                           log_level=args.log_level, timeout_graceful_shutdown=30))
    try:
        # SIGINT/SIGTERM: stop listening, finish what is in flight (30 s at most), stop the worker; then
        # uvicorn re-raises the signal, so the process ends as that signal says (Ctrl+C: exit 130)
        server.run()
    except SystemExit as e:      # uvicorn exits this way when it cannot bind the port
        return int(e.code or 1)
    return 0 if server.started else 1
