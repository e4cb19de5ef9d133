"""What a request of `mmgen serve` makes the model do: one turn of a conversation, run on the worker.

A route (server_routes.py) describes the turn (`TurnRequest`: the message, its picture and mask,
the options, the stored conversation it continues) and submits `run_turn` to the worker
(server_worker.py); `run_turn` streams the reply's words and previews back and ends with a
`TurnResult` (the forked session, the pictures as base64, the tokens used). `history_of` decodes a
stored conversation for the page, on the worker too: decoding uses the model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from PIL import Image

from .server_api import APIError, ImageOptions, Usage, apply_mask, b64_picture, bad_request, fit_picture
from .server_worker import Entry
from .replies import Reply
from .session import ChatSession, SessionError, reply_reserve
from .stream import IMAGE_TOKENS, Conversation, StreamError
from .unknown_words import note as unknown_words_note

ALL_ROWS = "all"                # TurnRequest.previews: a preview after every row (the page)


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
    note: str = ""               # the message's words the model was never taught (unknown_words.note)


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
                              usage=count_usage(model, session, reply, word_ids, opts.n),
                              image_id=reply.id if pictures else None, note=reply.note))


def session_refusal(e: SessionError, text_param: str) -> APIError:
    """A session's refusal as a 400. The one about length (the session raises it from the stream's
    StreamError, whose context it keeps) names the field that holds the message."""
    if isinstance(e.__context__, StreamError):
        return APIError(400, str(e), code="context_length_exceeded", param=text_param)
    return bad_request(str(e))


def count_usage(model, session: ChatSession, reply: Reply, word_ids: int, n: int) -> Usage:
    """Stream ids the model read (the fitted conversation before its reply, as generation encoded it:
    Reply.prompt_ids; for a refusal, which drew nothing, the same conversation encoded here) and
    wrote: words, <image> + 256 codes + </image> per picture, <eot>. Words are counted on the
    first reply; a batch of n is counted as n replies of that length; an undo in words, nothing."""
    if reply.undo:                      # the chat undid a change in words: the model read and wrote nothing
        return Usage()
    stream, pictures = model.stream, len(reply.images)
    ids = reply.prompt_ids
    if not ids:
        before = Conversation(session.conversation.turns[:-1])
        fitted = stream.fit(before, model.context, reserve=reply_reserve(session.settings.max_words))
        ids = stream.encode(fitted, generation_prompt=True).ids
    image_in = sum(1 for i in ids if stream.is_image_id(i))
    return Usage(input_text=len(ids) - image_in, input_image=image_in,
                 output_text=n * (word_ids + 1) + 2 * pictures, output_image=IMAGE_TOKENS * pictures)


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
        turn = {"role": item.role, "text": item.text, "image": picture, "id": item.id, "seed": item.seed}
        if item.role == "assistant":          # the note the reply carried (words never taught), said again
            turn["note"] = unknown_words_note(prompt, getattr(model, "vocabulary", None))
        turns.append(turn)
    return turns
