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
    POST /v1/images/edits         multipart image (or image[]: one picture), prompt, mask; image_edit.* events;
                                  or JSON, the picture as images: [{image_url: data URL}] or image: data URL
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
to the previous id.

Where things are: this module builds the app (create_app: middleware, error handlers, routers) and
runs it (the command line); server_routes.py has the routes, one APIRouter an area, and the
ServerState they share; server_turn.py what a request makes the model do (run_turn, on the worker);
server_worker.py the worker, its queue and the stored conversations; server_api.py the OpenAI
shapes (options, uploads, masks, responses, events).
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import math
import os
import re
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .hardware import device_problem
from .inputs import MAX_MESSAGE_CHARS
from .oneshot import one_line_errors
from .server_api import APIError, bad_request
from .server_routes import ROUTERS, WEB_DIR, ServerState
from .server_worker import ClientGone
from .session import ChatSession, SessionError
from .settings import Settings, setting_help

log = logging.getLogger("mmgen.server")


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
    """The FastAPI app serving `model` (an mmgen.MMGen): the routers of server_routes.py on one
    ServerState (app.state.server), behind the browser guard and the body limit. Its worker starts
    and stops with the app."""
    config = config or ServerConfig()
    server = ServerState.build(model, config)
    app = FastAPI(title="mmgen", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = server
    app.state.worker, app.state.store = server.worker, server.store     # by themselves too, for tests and tools
    # outermost last: refuse foreign pages and names before anything else; then CORS headers, so that
    # pages allowed with --allow-origin can read the answers; then the body limit
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    if config.allowed_origins:
        origins = [ANY] if ANY in config.allowed_origins else \
            [origin_text(o) for o in map(parse_origin, config.allowed_origins) if o is not None]
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["*"])
    app.add_middleware(BrowserGuard, allowed_origins=config.allowed_origins, allowed_hosts=config.allowed_hosts)
    for exception, handler in ERROR_HANDLERS.items():
        app.add_exception_handler(exception, handler)
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app


@asynccontextmanager
async def lifespan(app: FastAPI):
    """The worker runs while the app does; at shutdown what is still queued is answered 503."""
    server = app.state.server
    server.worker.start()
    log.info("serving %s", server.model.name)
    yield
    await asyncio.to_thread(server.worker.close)
    log.info("stopped after serving %d requests", server.worker.served)


# --- errors: every one in OpenAI's shape, never a traceback ---------------------------------------------
async def api_error(request: Request, exc: APIError):
    return error_response(exc)


async def body_too_large(request: Request, exc: BodyTooLarge):
    return error_response(too_large(request.app.state.server.config.max_body_bytes))


async def client_gone(request: Request, exc: ClientGone):
    return Response(status_code=499)          # nobody is listening; the status is for the access log


async def validation_error(request: Request, exc: RequestValidationError):
    first = exc.errors()[0] if exc.errors() else {}
    param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
    return error_response(bad_request(f"invalid request: {first.get('msg', 'bad input')}", param))


async def http_error(request: Request, exc: StarletteHTTPException):
    if exc.status_code == 404:
        message, code = f"unknown path: {request.method} {request.url.path}", "not_found"
    elif exc.status_code == 405:
        message, code = f"{request.method} is not allowed on {request.url.path}", "method_not_allowed"
    else:
        message, code = str(exc.detail), None
    return error_response(APIError(exc.status_code, message, code=code))


async def unexpected(request: Request, exc: Exception):
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(APIError(500, "internal server error; the server log has the details",
                                   code="internal_error"))


ERROR_HANDLERS = {APIError: api_error, BodyTooLarge: body_too_large, ClientGone: client_gone,
                  RequestValidationError: validation_error, StarletteHTTPException: http_error, Exception: unexpected}


# --- command line -------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    one_line_errors(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default %(default)s)")
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
    parser.add_argument("--max-body-mb", type=float, default=32.0,
                        help="largest request body, MB (default %(default)s)")
    parser.add_argument("--max-prompt-chars", type=int, default=MAX_MESSAGE_CHARS,
                        help=f"longest message (default {MAX_MESSAGE_CHARS})")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds per request, queueing included (default %(default)s)")
    parser.add_argument("--queue", type=int, default=64,
                        help="requests that may wait for the model (default %(default)s)")
    parser.add_argument("--batch", type=int, default=16,
                        help="requests drawn at once, sharing the transformer's passes (default 16; 1: one at a time)")
    parser.add_argument("--max-sessions", type=int, default=256,
                        help="conversations kept in memory (default %(default)s)")
    parser.add_argument("--max-words", type=int, default=None,
                        help=setting_help("max_words", "longest reply in text tokens before its picture"))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"),
                        help="how much the server logs (default %(default)s)")


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


def session_defaults(args: argparse.Namespace) -> dict:
    """The Settings the command line gives new conversations (--max-words; none left out)."""
    return {"max_words": args.max_words} if args.max_words is not None else {}


def argument_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with `mmgen serve`'s options (None: nothing), found before the model loads."""
    if not 0 < args.port < 65536:
        return f"--port must be in 1..65535, got {args.port}"
    limits = {"--max-body-mb": args.max_body_mb, "--timeout": args.timeout, "--queue": args.queue,
              "--max-sessions": args.max_sessions, "--max-prompt-chars": args.max_prompt_chars, "--batch": args.batch}
    for flag, value in limits.items():
        # `not value > 0` refuses nan too; an infinite float has no byte count or deadline
        if not value > 0 or (isinstance(value, float) and not math.isfinite(value)):
            return f"{flag} must be a positive number, got {value}"
    if args.threads is not None and args.threads < 1:
        return f"--threads must be at least 1, got {args.threads}"
    for origin in args.allow_origin:
        if origin != ANY and parse_origin(origin) is None:
            return (f"--allow-origin must be scheme://host[:port] (as a browser's address bar shows it) or '*', "
                    f"got {origin!r}")
    for name in args.allow_host:
        if name != ANY and not is_host_name(name):
            return f"--allow-host must be a host name or address (no scheme, no path) or '*', got {name!r}"
    try:
        Settings(**session_defaults(args))
    except SessionError as e:
        return str(e)
    return device_problem(args.device)


def run(args: argparse.Namespace) -> int:
    import sys

    def fail(message: str) -> int:
        print(f"mmgen serve: {message}", file=sys.stderr)
        return 2

    problem = argument_problem(args)
    if problem is not None:
        return fail(problem)
    import torch
    import uvicorn

    import mmgen
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        model = mmgen.load(args.checkpoints, device=args.device)
    except (FileNotFoundError, ValueError, OSError) as e:
        return fail(f"cannot load the model: {e}")
    defaults = session_defaults(args)
    try:
        ChatSession(model, **defaults)
    except SessionError as e:
        return fail(str(e))
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
