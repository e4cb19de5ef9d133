"""The routes of `mmgen serve`, one FastAPI router an area, and the state they share.

    pages          GET /, /health, /api/config                 no key needed
    models         GET /v1/models, /v1/models/{id}
    images         POST /v1/images/generations, /v1/images/edits
    conversations  POST /v1/responses, GET/DELETE /v1/responses/{id}; the page's POST /api/chat and
                   GET /api/session/{id}

create_app (server.py) builds one `ServerState` — the model, the config, the worker with its queue,
the stored conversations — keeps it at `app.state.server` and includes these routers; a route gets
it as a parameter typed `Server` (a FastAPI dependency). With an API key every router but `pages`
needs it (`require_key`). A route reads the request, describes the model's work as a TurnRequest
(server_turn.py), submits it to the worker, and answers with the result or streams its events.
"""
from __future__ import annotations

import asyncio
import hmac
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, StreamingResponse
from starlette.datastructures import UploadFile

from .batching import Batch, BatchStats
from .server_api import (SIZES, APIError, ResponseEvents, ResponsesInput, bad_request, check_prompt, checked_text,
                         completed_event, decode_data_url, get_choice, get_str, image_call_item, images_response,
                         message_item, new_id, parse_image_options, parse_json_object, parse_responses_request,
                         partial_image_event, read_mask, read_picture, response_object, sse)
from .server_turn import ALL_ROWS, TurnRequest, TurnResult, history_of, run_turn
from .server_worker import Entry, Job, SessionStore, Worker
from .settings import PICTURE_MODES, Settings
from .stream import IMAGE_SIDE

if TYPE_CHECKING:
    from .server import ServerConfig

WEB_DIR = Path(__file__).resolve().parent / "web"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


# --- the shared state --------------------------------------------------------------------------------
@dataclass
class ServerState:
    """What every route shares, one per app (app.state.server)."""
    model: Any                                   # an mmgen.MMGen
    config: ServerConfig
    worker: Worker                               # runs all model work, in turns, fed by a bounded queue
    store: SessionStore                          # finished conversations, by response id
    batch: Batch | None                          # the transformer's shared passes (None: nothing to share)
    created: int = field(default_factory=lambda: int(time.time()))     # the model card's `created`

    @classmethod
    def build(cls, model, config: ServerConfig) -> ServerState:
        # the transformer's shared passes: two rows a request (its guidance twin); one of n pictures takes
        # 2n and waits for them. A stand-in model without a transformer (tests) has nothing to share.
        lm = getattr(model, "lm", None)
        batch = Batch(lm, rows=max(2 * config.max_batch, 8), filler=model.stream.pad) if lm is not None else None
        worker = Worker(config.max_queue, batch=batch, max_active=config.max_batch)
        return cls(model=model, config=config, worker=worker, store=SessionStore(config.max_sessions), batch=batch)

    @property
    def names(self) -> frozenset:
        """The model names requests may give: the model's own, or "mmgen"."""
        return frozenset({self.model.name, "mmgen"})

    def check_model(self, name) -> None:
        """A request's `model` (None: not given) must name the served model: 400 when it is not a
        string (a list or an object), 404 when it names another model."""
        if name is None:
            return
        if not isinstance(name, str):
            raise bad_request("'model' must be a string", "model", code="invalid_type")
        if name not in self.names:
            raise APIError(404, f"the model {name!r:.80} does not exist; this server serves {self.model.name!r}",
                           code="model_not_found", param="model")

    def stored(self, previous, param: str = "previous_response_id") -> Entry | None:
        """The stored conversation a request names (None: it names none); 404 if it is not kept."""
        if previous is None:
            return None
        if not isinstance(previous, str):
            raise bad_request(f"'{param}' must be a string", param, code="invalid_type")
        entry = self.store.get(previous)
        if entry is None:
            raise APIError(404, f"no stored response {previous!r:.80}: it never existed, was deleted, or was dropped "
                                f"(the server keeps the last {self.config.max_sessions} conversations in memory)",
                           code="previous_response_not_found", param=param)
        return entry

    def deadline(self) -> float:
        """When a request arriving now must have had its last byte (event-loop time)."""
        return asyncio.get_running_loop().time() + self.config.timeout

    def submit(self, turn: TurnRequest) -> Job:
        return self.worker.submit(lambda lanes: run_turn(self.model, turn, lanes), batched=True)

    async def result(self, job: Job, until: float, request: Request):
        """The job's last item, once it has ended (server_worker.Job.result)."""
        return await job.result(until, self.config.timeout, request)

    async def started(self, job: Job, until: float, request: Request) -> AsyncIterator:
        """The job's items, once its first has come. A stream's headers say 200, so whatever fails before
        the model's first item (a message too long for the context, the deadline passing in the queue)
        is raised here and answered with its own status; what fails later is an error event."""
        streaming = False

        async def still_wanted() -> bool:       # once streaming, Starlette watches the client itself
            return streaming or not await request.is_disconnected()

        items = job.events(until, self.config.timeout, still_wanted)
        first = await anext(items, None)
        if first is None:          # ended without an item: stopped (shutdown), as Job.result says
            raise APIError(503, "the request was stopped before it started", code="shutting_down")
        streaming = True

        async def all_items():
            yield first
            async for item in items:
                yield item
        return all_items()


async def server_state(request: Request) -> ServerState:
    return request.app.state.server


Server = Annotated[ServerState, Depends(server_state)]


# With a key, every API route needs it, the page's own (/api/chat, /api/session) included; the page,
# its files, /api/config and /health do not (they hold nothing private, and the page must load to
# ask for the key): /api/config says a key is needed, the page asks for it, keeps it in the
# browser's localStorage and sends it as any client does. Requests are not exempted for looking
# like the page's own: Origin and Sec-Fetch-* are only trustworthy from browsers, and anything
# else can send them, so such an exemption would be a way around the key.
async def require_key(request: Request, server: Server) -> None:
    api_key = server.config.api_key
    if not api_key:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise APIError(401, "no API key given: send 'Authorization: Bearer KEY'", code="missing_api_key")
    if not hmac.compare_digest(token.strip().encode(), api_key.encode()):
        raise APIError(401, "incorrect API key", code="invalid_api_key")


KEYED = [Depends(require_key)]


def event_stream(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)


# --- the page and the server's status ------------------------------------------------------------------
pages = APIRouter()


@pages.get("/", include_in_schema=False)
async def index():
    return FileResponse(WEB_DIR / "index.html", media_type="text/html")


def batch_figures(stats: BatchStats) -> dict:
    """What /health says of the shared passes: how many, and how many requests they held; and how
    requests' prompts got in: prefilled (once per turn, more only when the batch was short of rows)
    or branched (a turn's pictures from its words, no prefill); the tokens the passes fed and the
    time they took (what a picture costs in them: benchmarks/server_load.py)."""
    return {"passes": stats.passes, "largest": stats.largest,
            "mean": round(stats.lanes_fed / stats.passes, 2) if stats.passes else 0.0,
            "prefills": stats.prefills, "branches": stats.branches,
            "tokens": stats.tokens, "pass_seconds": round(stats.pass_seconds, 3)}


def picture_figures(work) -> dict:
    """What /health says of the work after the passes: pictures decoded and refined, and the time
    each took (pipeline.PictureWork), which no batching of the passes shares out."""
    return {"decoded": work.decoded, "decode_seconds": round(work.decode_seconds, 3),
            "refined": work.refined, "refine_seconds": round(work.refine_seconds, 3)}


@pages.get("/health")
async def health(server: Server):
    worker, config = server.worker, server.config
    return {"status": "ok" if not worker.closed and worker.thread.is_alive() else "stopping",
            "model": server.model.name, "waiting": worker.waiting, "max_queue": config.max_queue,
            "busy": worker.busy, "drawing": len(worker.active), "served": worker.served,
            "sessions": len(server.store),
            "batch": batch_figures(server.batch.stats) if server.batch is not None else None,
            "pictures": picture_figures(server.model.picture_work)}


@pages.get("/api/config")
async def page_config(server: Server):
    config = server.config
    return {"model": server.model.name, "auth": bool(config.api_key), "max_prompt_chars": config.max_prompt_chars,
            "max_body_bytes": config.max_body_bytes, "size": "128x128", "sizes": list(SIZES)}


# --- models ----------------------------------------------------------------------------------------------
models = APIRouter(dependencies=KEYED)


def model_card(server: ServerState) -> dict:
    return {"id": server.model.name, "object": "model", "created": server.created, "owned_by": "mmgen"}


@models.get("/v1/models")
async def list_models(server: Server):
    return {"object": "list", "data": [model_card(server)]}


@models.get("/v1/models/{model_id}")
async def get_model(model_id: str, server: Server):
    server.check_model(model_id)
    return model_card(server)


# --- images: OpenAI's Images API -------------------------------------------------------------------------
images = APIRouter(dependencies=KEYED)


@images.post("/v1/images/generations")
async def generations(request: Request, server: Server):
    config = server.config
    body = parse_json_object(await request.body())
    server.check_model(body.get("model"))
    prompt = check_prompt(body, config.max_prompt_chars)
    opts = parse_image_options(body, defaults=config.session_defaults)
    turn = TurnRequest(text=prompt, options=opts, previews=opts.preview_rows(), defaults=config.session_defaults)
    return await images_reply(server, request, turn, prompt, "image_generation")


@images.post("/v1/images/edits")
async def edits(request: Request, server: Server):
    config = server.config
    content_type = request.headers.get("content-type", "")
    is_form = content_type.startswith("multipart/form-data")
    if is_form:
        fields, datas, mask_data = await read_edit_form(request)
    elif content_type.startswith("application/json"):
        fields, datas, mask_data = read_edit_json(parse_json_object(await request.body()))
    else:
        raise bad_request("send the edit as multipart/form-data (image, prompt, mask) or as JSON with images "
                          "as data URLs", code="unsupported_content_type")
    server.check_model(fields.get("model"))
    prompt = check_prompt(fields, config.max_prompt_chars)
    if not datas:
        raise bad_request("'image' is required: the picture to edit (multipart: an image file; JSON: "
                          "\"image\": \"data:image/png;base64,...\" or \"images\": [{\"image_url\": \"data:...\"}])",
                          "image", code="missing_required_parameter")
    if len(datas) > 1:
        raise bad_request(f"this model edits one picture at a time; got {len(datas)}", "image")
    opts = parse_image_options(fields, form=is_form, defaults=config.session_defaults)
    image = read_picture(datas[0], "image")
    mask = read_mask(mask_data, image) if mask_data is not None else None
    turn = TurnRequest(text=prompt, options=opts, image=image, mask=mask, previews=opts.preview_rows(),
                       defaults=config.session_defaults)
    return await images_reply(server, request, turn, prompt, "image_edit")


async def read_edit_form(request: Request) -> tuple[dict, list[bytes], bytes | None]:
    """A multipart edit → (its text fields, the pictures' bytes, the mask's bytes or None)."""
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
        for key, value in form.multi_items():      # a text field sent as a file would read as missing
            if key not in ("image", "image[]", "mask") and isinstance(value, UploadFile):
                raise bad_request(f"'{key:.40}' must be a text field, not a file upload", key[:40])
    return fields, datas, mask_data


def read_edit_json(fields: dict) -> tuple[dict, list[bytes], bytes | None]:
    """OpenAI's JSON form of an edit, images: [{"image_url": "data:..."}], mask: {"image_url": ...} →
    (the fields, the pictures' bytes, the mask's bytes or None). The picture may also come as
    image: "data:..." or {"image_url": "data:..."} (the multipart form's field name), as the mask does."""
    listed = fields.get("images")
    if listed is not None and not isinstance(listed, list):
        raise bad_request("'images' must be a list of {\"image_url\": data URL}", "images", code="invalid_type")
    datas = [decode_data_url(x.get("image_url") if isinstance(x, dict) else None, f"images[{i}].image_url")
             for i, x in enumerate(listed or [])]
    image = fields.get("image")
    if image is not None:
        datas.append(decode_data_url(image.get("image_url") if isinstance(image, dict) else image, "image"))
    mask_field = fields.get("mask")
    mask_data = decode_data_url(mask_field.get("image_url") if isinstance(mask_field, dict) else mask_field,
                                "mask.image_url") if mask_field is not None else None
    return fields, datas, mask_data


async def images_reply(server: ServerState, request: Request, turn: TurnRequest, prompt: str, kind: str):
    """Runs the turn: the pictures in one answer, or (stream) as `kind`.partial_image/.completed events."""
    opts, job, until = turn.options, server.submit(turn), server.deadline()
    if opts.stream:
        return event_stream(image_events(await server.started(job, until, request), kind, opts))
    result = (await server.result(job, until, request))[1]
    return images_response(created=int(time.time()), pictures=result.pictures, prompt=prompt, options=opts,
                           usage=result.usage, seed=result.seed, text=result.text, note=result.note)


async def image_events(items: AsyncIterator, kind: str, opts) -> AsyncIterator[str]:
    sent = 0
    try:
        async for item in items:
            if item[0] == "preview":
                yield sse(partial_image_event(kind, b64=item[4], index=item[3], options=opts), f"{kind}.partial_image")
                sent += 1
            elif item[0] == "done":
                result = item[1]
                for picture in result.pictures:
                    yield sse(completed_event(kind, b64=picture, options=opts, usage=result.usage, seed=result.seed,
                                              text=result.text, note=result.note), f"{kind}.completed")
                    sent += 1
    except APIError as e:
        yield sse(e.event(sent), "error")


# --- conversations: the Responses API, and the page's own turn endpoint ----------------------------------
conversations = APIRouter(dependencies=KEYED)


class ConversationTurn:
    """A new turn of a conversation (a new one, or a stored one continued): its ids, its job on the
    worker, and the response it stores under its id once the job is done."""

    def __init__(self, server: ServerState, req: ResponsesInput, previous: str | None, entry: Entry | None,
                 previews, text_param: str):
        self.server, self.req, self.previous = server, req, previous
        earlier = entry is not None and entry.session.conversation.last_image_index() is not None
        self.response_id, self.message_id, self.image_id = new_id("resp"), new_id("msg"), new_id("ig")
        self.action = "edit" if req.image is not None or earlier else "generate"
        self.job = server.submit(TurnRequest(text=req.text, options=req.options, picture=req.picture,
                                             image=req.image, base=entry.session if entry else None,
                                             previews=previews, defaults=server.config.session_defaults,
                                             text_param=text_param))

    def response(self, status: str, output: list, usage) -> dict:
        return response_object(response_id=self.response_id, model=self.server.model.name,
                               created_at=int(time.time()), status=status, output=output, request=self.req,
                               previous=self.previous, usage=usage)

    def skeleton(self) -> dict:
        """The response while it is drawn, for a stream's first events."""
        return self.response("in_progress", [], None)

    def finish(self, result: TurnResult, with_message: bool) -> dict:
        output = [message_item(self.message_id, result.text)] if with_message else []
        if result.pictures:
            output.append(image_call_item(self.image_id, result=result.pictures[0], options=self.req.options,
                                          action=self.action, text=result.text))
        response = self.response("completed", output, result.usage)
        response["mmgen"] = {"seed": result.seed, "image_id": result.image_id, "note": result.note}
        self.server.store.put(self.response_id, Entry(session=result.session, response=response,
                                                      previous=self.previous))
        return response


@conversations.post("/v1/responses")
async def responses(request: Request, server: Server):
    body = parse_json_object(await request.body())
    server.check_model(body.get("model"))
    previous = body.get("previous_response_id")
    entry = server.stored(previous)
    req = parse_responses_request(body, server.config.max_prompt_chars, defaults=server.config.session_defaults)
    turn = ConversationTurn(server, req, previous, entry, req.options.preview_rows(), text_param="input")
    until = server.deadline()
    if req.options.stream:
        items = await server.started(turn.job, until, request)
        streamer = ResponseEvents(turn.skeleton(), turn.message_id, turn.image_id, req.options, turn.action)
        return event_stream(response_events(items, streamer, turn))
    result = (await server.result(turn.job, until, request))[1]
    return turn.finish(result, bool(result.text))


async def response_events(items: AsyncIterator, streamer: ResponseEvents, turn: ConversationTurn):
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
                response = turn.finish(result, streamer.message_open or bool(result.text))
                final = result.pictures[0] if result.pictures else None
                out = streamer.finish(result.text, final, response)
            for e in out:
                yield sse(e, e["type"])
    except APIError as e:
        for event in streamer.error(e):
            yield sse(event, "error")


@conversations.get("/v1/responses/{response_id}")
async def get_response(response_id: str, server: Server):
    return server.stored(response_id, "response_id").response


@conversations.delete("/v1/responses/{response_id}")
async def delete_response(response_id: str, server: Server):
    if not server.store.delete(response_id):
        server.stored(response_id, "response_id")      # the 404
    return {"id": response_id, "object": "response", "deleted": True}


@conversations.post("/api/chat")
async def page_chat(request: Request, server: Server):
    """The page's turn: {message, image?: data URL, previous_response_id?, picture?, background?, seed?, cfg?,
    temperature?} → SSE of {"type": "text"|"preview"|"done"|"error"}; every row of the picture is previewed."""
    config = server.config
    body = parse_json_object(await request.body())
    previous = body.get("previous_response_id")
    entry = server.stored(previous)
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
    turn = ConversationTurn(server, req, previous, entry, ALL_ROWS, text_param="message")
    return event_stream(page_events(await server.started(turn.job, server.deadline(), request), turn))


async def page_events(items: AsyncIterator, turn: ConversationTurn):
    sent = 0
    try:
        async for item in items:
            if item[0] == "text":
                yield sse({"type": "text", "text": item[1]})
            elif item[0] == "preview":
                yield sse({"type": "preview", "rows": item[2], "of": IMAGE_SIDE, "image": item[4]})
            else:
                result = item[1]
                response = turn.finish(result, bool(result.text))
                yield sse({"type": "done", "id": turn.response_id, "previous_response_id": turn.previous,
                           "text": result.text, "image": result.pictures[0] if result.pictures else None,
                           "image_id": result.image_id, "seed": result.seed, "note": result.note,
                           "background": turn.req.options.resolved_background, "usage": response["usage"]})
            sent += 1
    except APIError as e:
        yield sse(e.event(sent))


@conversations.get("/api/session/{response_id}")
async def page_session(request: Request, response_id: str, server: Server):
    """A stored conversation for the page to restore: its turns, pictures decoded, and the ids before it."""
    entry = server.stored(response_id, "response_id")

    def work():          # decoding the pictures uses the model: on the worker, like everything else
        yield history_of(server.model, entry)
    job = server.worker.submit(work)
    turns = await server.result(job, server.deadline(), request)
    return {"id": response_id, "previous_response_id": entry.previous, "chain": server.store.chain(response_id),
            "turns": turns}


ROUTERS = (pages, models, images, conversations)
