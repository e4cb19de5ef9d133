"""A chat session: the conversation, one record per turn, and the public Python API.

    chat = mmgen.load().chat(seed=0)
    reply = chat.send("draw a red circle at the top left")   # Reply: .text, .image, .id, .save(path)
    reply = chat.send("make it blue")                         # edits the last picture
    for event in chat.stream("add a star at the top"):       # words, a preview per row, the picture, done
        ...
    chat.undo(); chat.retry(); chat.fork(); chat.history
    chat.send("undo that")                                    # the chat's own undo, in words (typed_undo.py)
    chat.save("chat.json"); chat = mmgen.ChatSession.load("chat.json", model)

The conversation keeps the exact codes of every picture, so the next edit conditions on what
was drawn, never on a re-encoding of the pixels; a reloaded session edits the very picture it
showed. Pictures the user gives are VQ-encoded once, on the way in.

What lives where: the session checks what users send (inputs.py, the same checks the command
line and the server make), keeps the turns (TurnRecord), undo, retry, fork and the session file;
its pipeline (pipeline.py) does the image work: encoding a given picture, drawing a reply with
previews, decoding and refining pictures.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from PIL import Image

from .inputs import (MAX_SEED, NotAQuestion, SessionError, check_count, check_is_text, check_seed, check_text,
                     mask_grid, read_image, seed_after, user_path)
from .io import atomic_write_json
from .pipeline import Drawn, Pipeline, reply_reserve
from .previews import PREVIEW_GREY, PREVIEW_MARGIN, PreviewCanvas, preview_image
from .replies import Event, HistoryItem, Reply
from .settings import Settings
from .stream import Conversation, StreamError, Turn
from .typed_undo import NOTHING_TO_UNDO, UNDONE, UNDONE_TO_NOTHING, is_undo_request
from .unknown_words import note as unknown_words_note

# Also the session's API, for the code that imports them from here: the server (reply_reserve,
# SessionError), the terminal and the one-shot commands (read_image), tests and benchmarks.
__all__ = ["ChatSession", "TurnRecord", "Reply", "Event", "HistoryItem", "SessionError", "Settings",
           "read_image", "mask_grid", "reply_reserve", "PREVIEW_GREY", "PREVIEW_MARGIN", "PreviewCanvas",
           "preview_image", "SESSION_FORMAT"]

SESSION_FORMAT = "mmgen-session-1"
MAX_SESSION_BYTES = 64 * 2**20             # a session of a thousand pictures is ~2 MB

# A moderation hook looks at a message (and a picture the user gives) and returns a refusal
# message, or None to let it through.
Moderation = Callable[[str, "Image.Image | None"], "str | None"]


@dataclass(frozen=True)
class TurnRecord(Turn):
    """A turn as the session keeps it: what the model reads (role, words, the picture's codes) and
    what the session knows besides. A reply's turn has the seed it was drawn with and its id (its
    first picture's, else a message id); a user's turn has neither."""
    seed: int | None = None
    id: str | None = None

    @classmethod
    def of(cls, turn: Turn) -> "TurnRecord":
        """`turn` as a record (one from a bare stream.Turn knows no seed and no id)."""
        return turn if isinstance(turn, TurnRecord) else cls(role=turn.role, text=turn.text, codes=turn.codes)


def message_id() -> str:
    return f"msg_{uuid.uuid4().hex[:12]}"


def _exchange_start(turns, i: int) -> int:
    """Index of the user turn that begins the exchange holding turn i (0 when none does)."""
    while i > 0 and turns[i].role != "user":
        i -= 1
    return i


class ChatSession:
    """A conversation with the model: its turns (`conversation`, a TurnRecord each), its settings
    and seed, and the pipeline that draws its replies (and keeps the refined pictures it showed)."""

    def __init__(self, model, seed: int | None = None, moderation: Moderation | None = None, **settings):
        self.model = model
        self.pipeline = Pipeline(model)
        self.settings = Settings().with_overrides(settings)
        self.seed = seed if seed is not None else torch.seed() % (MAX_SEED + 1)
        self.moderation = moderation
        self.conversation = Conversation()

    @property
    def seed(self) -> int:
        """The session's seed (0 to MAX_SEED): each turn's seed is drawn from it (turn_seed)."""
        return self._seed

    @seed.setter
    def seed(self, seed: int) -> None:
        self._seed = check_seed(seed)

    @property
    def conversation(self) -> Conversation:
        """The turns so far, a TurnRecord each: what the model reads, and each turn's seed and id."""
        return self._conversation

    @conversation.setter
    def conversation(self, conversation: Conversation) -> None:
        self._conversation = Conversation(tuple(TurnRecord.of(t) for t in conversation.turns))

    def set(self, **settings) -> Settings:
        """Change the session's defaults, e.g. chat.set(cfg=5, temperature=0.8)."""
        self.settings = self.settings.with_overrides(settings)
        return self.settings

    @property
    def _model_name(self) -> str:
        return getattr(self.model, "name", "mmgen")

    # --- replying ---------------------------------------------------------------------------
    def stream(self, text: str, image=None, *, n: int = 1, seed: int | None = None, mask=None,
               previews: bool = True, decoders=None, **overrides) -> Iterator[Event]:
        """Reply to `text` (and an optional picture), yielding events as they happen.

        overrides: settings for this reply only (settings.Settings), e.g. picture="always" (or
        "never": words only; the default "auto" lets the model decide whether to draw).
        mask: a region edit of the picture being edited (the one given, else the last one): a
        16 × 16 grid of booleans (True = redraw) or a mask picture whose alpha is 0 where the
        picture may change. Codes outside the region are kept exactly.
        decoders: where the transformer's passes run (generate.generate_ids); the server's shared
        batch (batching.Lanes) draws this reply together with other requests'.
        """
        text = check_text(text, "the message", allow_empty=True)    # empty is fine with a picture: below
        settings = self.settings.with_overrides(overrides)
        check_count(n)
        region = mask_grid(mask) if mask is not None else None
        given = read_image(image) if image is not None else None
        refusal = self.moderation(text, given) if self.moderation is not None else None
        if refusal:
            # a refusal is an ordinary reply; the conversation the model sees is unchanged
            yield Event("text", text=refusal)
            yield Event("done", reply=Reply(text=refusal, refused=True, id=message_id(), prompt=text,
                                            model=self._model_name))
            return
        if not text.strip() and given is None:
            raise SessionError("the message is empty")
        if given is None and settings.picture == "auto" and n == 1 and is_undo_request(text):
            yield from self._undo_in_words(text, settings)
            return
        codes = self.pipeline.encode(given) if given is not None else None
        turn_seed = check_seed(seed) if seed is not None else self.turn_seed()
        yield from self._run(TurnRecord(role="user", text=text, codes=codes), settings, turn_seed, n, previews,
                             region, decoders)

    def turn_seed(self) -> int:
        """The seed of the next turn, when the call gives none: the session's seed moved on by the turns
        so far, kept in 0 … MAX_SEED so that a reply's seed can be given back."""
        return seed_after(self.seed, 7919 * len(self.conversation.turns))

    def send(self, text: str, image=None, **kwargs) -> Reply:
        """Reply to `text` (and an optional picture: PIL image, path or bytes)."""
        return finished_reply(self.stream(text, image, previews=False, **kwargs))

    def ask(self, question: str, image=None, **kwargs) -> Reply:
        """Answer in words. As in chat, the model decides whether the message wants a picture; one that
        does ("make it blue") is a change, not a question, and words alone would claim a change that no
        picture shows. So the model is stopped as it begins to draw, the session is left as it was, and
        NotAQuestion (a SessionError) says so."""
        if image is None and is_undo_request(question):
            raise NotAQuestion(f"{question!r} asks to undo the last change, not a question (send it, or call undo())")
        events = self.stream(question, image, previews=True, **{**kwargs, "picture": "auto"})
        try:
            for event in events:
                if event.kind in ("preview", "image"):
                    raise NotAQuestion(f"the model took {question!r} for a change to make, not a question "
                                       "(it began to draw)")
                if event.kind == "done":
                    return event.reply
        finally:
            events.close()
        raise RuntimeError("the reply ended without finishing")

    def _run(self, user: TurnRecord, settings: Settings, seed: int, n: int, previews: bool,
             region: list[bool] | None = None, decoders=None) -> Iterator[Event]:
        """Draw the reply to `user` with the pipeline, passing its events on; then the picture and
        'done'. Only a finished reply changes the session: a stream stopped midway leaves it as it was."""
        conversation = self.conversation.append(user)
        drawn = yield from self.pipeline.stream(conversation, settings, seed=seed, n=n, region=region,
                                                previews=previews, decoders=decoders)
        reply = self._reply(drawn, user.text, settings, seed, self._parent(conversation) if drawn.images else None)
        if reply.image is not None:
            yield Event("image", image=reply.image)
        self.conversation = conversation.append(TurnRecord(role="assistant", text=drawn.text, codes=reply.codes,
                                                           seed=seed, id=reply.id))
        yield Event("done", reply=reply)

    def _reply(self, drawn: Drawn, prompt: str, settings: Settings, seed: int, parent: str | None) -> Reply:
        """The reply to hand back for what the pipeline drew, a provenance id for each picture."""
        ids = [f"img_{uuid.uuid4().hex[:12]}" for _ in drawn.images]
        return Reply(text=drawn.text, image=drawn.images[0] if drawn.images else None, images=drawn.images,
                     codes=drawn.codes[0] if drawn.codes else None, id=ids[0] if ids else message_id(), ids=ids,
                     seed=seed, prompt=prompt, parent=parent, model=self._model_name,
                     provenance=settings.provenance, stats=drawn.stats if drawn.stats.rounds else None,
                     prompt_ids=drawn.prompt_ids,
                     note=unknown_words_note(prompt, getattr(self.model, "vocabulary", None)))

    def _parent(self, conversation: Conversation) -> str | None:
        """The id of the picture a new one derives from, in `conversation` (the session's turns and
        the new message): "user-upload" for a picture given with the new message."""
        i = conversation.last_image_index()
        if i is None:
            return None
        return conversation.turns[i].id if i < len(self.conversation.turns) else "user-upload"

    def _undo_in_words(self, text: str, settings: Settings) -> Iterator[Event]:
        """A message that only asks to undo (typed_undo.is_undo_request; a chat reply of one picture
        the model decides on): forget the last exchange that brought or drew a picture and every turn
        after it, and show the latest picture left, as the history shows it. The request itself is not
        kept, so the model reads the conversation as if the change had never been asked for. Only the
        finished reply changes the session."""
        latest, kept = self.conversation.last_image_index(), self.conversation
        if latest is None:
            reply = Reply(text=NOTHING_TO_UNDO, id=message_id(), prompt=text, model=self._model_name, undo=True)
        else:
            kept = Conversation(kept.turns[:_exchange_start(kept.turns, latest)])
            reply = self._restored(kept, text, settings)
        yield Event("text", text=reply.text)
        if reply.image is not None:
            yield Event("image", image=reply.image)
        self.conversation = kept
        yield Event("done", reply=reply)

    def _restored(self, conversation: Conversation, request: str, settings: Settings) -> Reply:
        """The reply to an undo in words: the latest picture of `conversation` with its own provenance
        (its id, seed and the message that asked for it; "" for a picture the user gave)."""
        i = conversation.last_image_index()
        if i is None:
            return Reply(text=UNDONE_TO_NOTHING, id=message_id(), prompt=request, model=self._model_name, undo=True)
        turn = conversation.turns[i]
        image = self.pipeline.pictures([turn.codes], [turn.seed], settings)[0]
        rid = turn.id or message_id()
        asked = conversation.turns[_exchange_start(conversation.turns, i)].text if turn.role == "assistant" else ""
        return Reply(text=UNDONE, image=image, images=[image], codes=turn.codes, id=rid, ids=[rid], seed=turn.seed,
                     prompt=asked, model=self._model_name, provenance=settings.provenance, undo=True)

    # --- the conversation as a whole ------------------------------------------------------------
    def undo(self) -> bool:
        """Forget the last exchange (your message and the reply). False if there is none."""
        turns = self.conversation.turns
        if not turns:
            return False
        self.conversation = Conversation(turns[:_exchange_start(turns, len(turns) - 1)])
        return True

    def retry_stream(self, seed: int | None = None, previews: bool = True, **overrides) -> Iterator[Event]:
        """Answer the last message again with a new seed, streaming; the last reply is replaced
        only when the new one is finished (stopping midway leaves the session as it was)."""
        turns = self.conversation.turns
        if len(turns) < 2 or turns[-2].role != "user":
            raise SessionError("there is no message to retry")
        user, old_seed = turns[-2], turns[-1].seed if turns[-1].seed is not None else self.seed
        settings = self.settings.with_overrides(overrides)
        new_seed = check_seed(seed) if seed is not None else seed_after(old_seed)
        base = self.fork()
        base.undo()
        for event in base._run(user, settings, new_seed, 1, previews):
            if event.kind == "done":
                self.conversation = base.conversation
            yield event

    def retry(self, seed: int | None = None, **overrides) -> Reply:
        """Answer the last message again with a new seed (the last reply is replaced)."""
        return finished_reply(self.retry_stream(seed=seed, previews=False, **overrides))

    def fork(self) -> "ChatSession":
        """An independent copy: what happens in one does not touch the other."""
        other = ChatSession(self.model, seed=self.seed, moderation=self.moderation, **asdict(self.settings))
        other.conversation = self.conversation          # records are immutable: sharing them is copying
        return other

    def new(self) -> None:
        """Start over (settings kept)."""
        self.conversation = Conversation()

    @property
    def history(self) -> list[HistoryItem]:
        turns = self.conversation.turns
        drawn = [t for t in turns if t.codes is not None]
        images = iter(self.pipeline.pictures([t.codes for t in drawn], [t.seed for t in drawn], self.settings))
        return [HistoryItem(role=t.role, text=t.text, image=next(images) if t.codes is not None else None,
                            seed=t.seed, id=t.id) for t in turns]

    @property
    def last_image(self) -> Image.Image | None:
        i = self.conversation.last_image_index()
        if i is None:
            return None
        turn = self.conversation.turns[i]
        return self.pipeline.pictures([turn.codes], [turn.seed], self.settings)[0]

    # --- files ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": SESSION_FORMAT, "model": self._model_name,
                "codebook_size": self.model.stream.codebook_size, "seed": self.seed,
                "settings": asdict(self.settings),
                "turns": [{"role": t.role, "text": t.text, "codes": list(t.codes) if t.codes is not None else None,
                           "seed": t.seed, "id": t.id} for t in self.conversation.turns]}

    def save(self, path: str | Path) -> Path:
        """Write the session (exact picture codes included) atomically: temp file + rename."""
        path = user_path(path)
        atomic_write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str | Path, model, moderation: Moderation | None = None) -> "ChatSession":
        """Read a session file; a damaged or foreign file raises SessionError and changes nothing."""
        path = user_path(path)
        data = read_session_file(path, model.stream.codebook_size)
        try:
            seed = check_seed(data.get("seed"))
        except SessionError as e:          # e.g. saved before seeds had a range: say which file
            raise SessionError(f"{path}: {e}") from None
        try:
            session = cls(model, seed=seed, moderation=moderation, **data["settings"])
            turns = tuple(turn_from_file(t, model.stream.codebook_size, path) for t in data["turns"])
        except SessionError:
            raise
        except (KeyError, TypeError, ValueError, StreamError) as e:
            problem = f"{e} is missing" if isinstance(e, KeyError) else str(e)
            raise SessionError(f"{path} is damaged: {problem}") from None
        session.conversation = Conversation(turns)
        return session


def finished_reply(events: Iterator[Event]) -> Reply:
    """The reply a stream of events ends with."""
    for event in events:
        if event.kind == "done":
            return event.reply
    raise RuntimeError("the reply ended without finishing")


def read_session_file(path: Path, codebook_size: int) -> dict:
    """The JSON of a session file saved for a tokenizer of `codebook_size` codes; SessionError if it is not one."""
    try:
        if path.exists() and not path.is_file() and not path.is_dir():     # a FIFO or device would never end
            raise SessionError(f"{path} is not a session file (not a regular file)")
        if path.is_file() and path.stat().st_size > MAX_SESSION_BYTES:
            raise SessionError(f"{path} is larger than {MAX_SESSION_BYTES // 2**20} MB: not a session file")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SessionError(f"no session file at {path}") from None
    except IsADirectoryError:
        raise SessionError(f"{path} is a folder, not a session file") from None
    except OSError as e:
        raise SessionError(f"cannot read {path}: {e.strerror or e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SessionError(f"{path} is not a session file (a session is JSON written by /save)") from None
    if not isinstance(data, dict) or data.get("format") != SESSION_FORMAT:
        raise SessionError(f"{path} is not an mmgen session (format {SESSION_FORMAT!r} expected)")
    if data.get("codebook_size") != codebook_size:
        raise SessionError(f"{path} was saved with a different image tokenizer "
                           f"({data.get('codebook_size')} codes, this model has {codebook_size})")
    return data


def turn_text(text, role) -> str:
    """A saved turn's words: a user's checked as a message is (check_text); a reply's, which the model
    wrote and no limit applied to, only as text the tokenizer can read."""
    if role == "user":
        return check_text(text, "a turn's text", allow_empty=True)
    return check_is_text(text, "a turn's text")


def turn_from_file(t: dict, codebook_size: int, path: Path) -> TurnRecord:
    """One turn of a session file, checked as the session would check it when it was made, so a
    damaged file is refused on /load and not at the next message (KeyError or TypeError where it is)."""
    if not isinstance(t, dict):
        raise SessionError(f"{path} is damaged: a turn is {type(t).__name__}, not an object")
    codes = t.get("codes")
    if codes is not None and any(not isinstance(c, int) or not 0 <= c < codebook_size for c in codes):
        raise SessionError(f"{path}: a picture has codes outside the codebook")
    try:
        text = turn_text(t["text"], t.get("role"))
        seed = None if t.get("seed") is None else check_seed(t["seed"])
    except SessionError as e:
        raise SessionError(f"{path} is damaged: {e}") from None
    if not isinstance(t.get("id"), (str, type(None))):
        raise SessionError(f"{path} is damaged: a turn's id is {type(t['id']).__name__}, not text")
    return TurnRecord(role=t["role"], text=text, codes=tuple(codes) if codes is not None else None,
                      seed=seed, id=t.get("id"))
