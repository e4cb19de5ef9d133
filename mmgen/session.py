"""A chat session: turns of words and pictures, the public Python API.

    chat = mmgen.load().chat(seed=0)
    reply = chat.send("draw a red circle at the top left")   # Reply: .text, .image, .id, .save(path)
    reply = chat.send("make it blue")                         # edits the last picture
    for event in chat.stream("add a star at the top"):       # words, a preview per row, the picture, done
        ...
    chat.undo(); chat.retry(); chat.fork(); chat.history
    chat.save("chat.json"); chat = mmgen.ChatSession.load("chat.json", model)

The conversation keeps the exact codes of every picture, so the next edit conditions on what
was drawn, never on a re-encoding of the pixels; a reloaded session edits the very picture it
showed. Pictures the user gives are VQ-encoded once, on the way in.
"""
from __future__ import annotations

import copy
import json
import uuid
from collections import OrderedDict
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable, Iterator

import torch
from PIL import Image

from .generate import generate_ids
from .imageutil import make_transparent
from .inputs import SessionError, check_count, check_text, mask_grid, read_image
from .io import atomic_write_json
from .neighbours import NeighbourTable
from .previews import PREVIEW_GREY, PREVIEW_MARGIN, PreviewCanvas, preview_image
from .replies import Event, HistoryItem, Reply
from .settings import Settings
from .speculative import CopyDrafter, ModelDrafter, NeighbourDrafter, SpeculationStats
from .stream import IMAGE_SIDE, IMAGE_TOKENS, Conversation, StreamError, Turn

# the previews and the reply types are the session's API too (tests and benchmarks import them from here)
__all__ = ["ChatSession", "Reply", "Event", "HistoryItem", "SessionError", "Settings", "read_image", "mask_grid",
           "REPLY_RESERVE", "PREVIEW_GREY", "PREVIEW_MARGIN", "PreviewCanvas", "preview_image"]

SESSION_FORMAT = "mmgen-session-1"
REPLY_RESERVE = IMAGE_TOKENS + 80        # ids kept free in the context for the reply
SHOWN_CACHE = 64                         # refined pictures kept per session, so history reads don't refine again

# A moderation hook looks at a message (and a picture the user gives) and returns a refusal
# message, or None to let it through.
Moderation = Callable[[str, "Image.Image | None"], "str | None"]


class ChatSession:
    def __init__(self, model, seed: int | None = None, moderation: Moderation | None = None, **settings):
        self.model = model
        self.settings = Settings().with_overrides(settings)
        self.seed = int(seed) if seed is not None else int(torch.seed() % 2**31)
        self.moderation = moderation
        self.conversation = Conversation()
        self._meta: list[dict] = []          # per turn: {"seed", "id"}; parallel to conversation.turns
        self._shown: OrderedDict = OrderedDict()   # (codes, seed) → refined picture, most recent last

    # --- inputs -----------------------------------------------------------------------------
    def _codes_of(self, image: Image.Image) -> tuple[int, ...]:
        try:
            ids = self.model.vq.encode(image)
        except (TypeError, ValueError) as e:
            raise SessionError(f"cannot use that picture: {e}") from None
        return tuple(ids[0].reshape(-1).tolist())

    def set(self, **settings) -> Settings:
        """Change the session's defaults, e.g. chat.set(cfg=5, temperature=0.8)."""
        self.settings = self.settings.with_overrides(settings)
        return self.settings

    # --- pictures ---------------------------------------------------------------------------
    def _decode(self, codes_list: list[list[int]], canvas: PreviewCanvas | None = None) -> list[Image.Image]:
        """The pictures of `codes_list`; one the canvas's last preview already decoded is reused."""
        known = [canvas.decoded(c) if canvas is not None else None for c in codes_list]
        todo = [c for c, im in zip(codes_list, known) if im is None]
        fresh = iter(self.model.vq.decode(torch.tensor(todo).view(-1, IMAGE_SIDE, IMAGE_SIDE)) if todo else [])
        return [im if im is not None else next(fresh) for im in known]

    def _pictures(self, codes_list: list[list[int]], seeds: list[int | None], settings: Settings,
                  canvas: PreviewCanvas | None = None) -> list[Image.Image]:
        """Drawn pictures as shown: decoded, then refined when asked and a refiner is loaded.
        Each is refined on its own with its reply's seed, so the history and a reloaded session
        show exactly the picture the reply showed. Pictures a user gave (seed None) are not refined."""
        images = self._decode(codes_list, canvas)
        refiner = getattr(self.model, "refiner", None)
        if not settings.refine or refiner is None:
            return images
        return [im if seed is None else self._refined(im, tuple(codes), seed)
                for im, codes, seed in zip(images, codes_list, seeds)]

    def _refined(self, image: Image.Image, codes: tuple[int, ...], seed: int) -> Image.Image:
        """The refiner's output for these codes and seed; a picture shown before is not refined again."""
        key = (codes, seed)
        if key not in self._shown:
            self._shown[key] = self.model.refiner.refine(image, seed=seed)
            while len(self._shown) > SHOWN_CACHE:
                self._shown.popitem(last=False)
        self._shown.move_to_end(key)
        return self._shown[key].copy()      # callers may draw on theirs; the cached one stays clean

    def preview(self, codes: list[int], canvas: PreviewCanvas | None = None) -> Image.Image:
        """The rows drawn so far, the rows still to come flat grey (preview_image); with the
        canvas of the previews before, only the new rows are added (PreviewCanvas)."""
        return (canvas or PreviewCanvas(self.model.vq)).image(codes)

    def _finish(self, img: Image.Image, settings: Settings) -> Image.Image:
        return make_transparent(img) if settings.background == "transparent" else img

    def _drafter(self, settings: Settings, reference: tuple[int, ...] | None):
        mode = settings.speculative
        draft = getattr(self.model, "draft", None)
        if mode == "off":
            return None
        if mode == "draft" or (mode == "auto" and draft is not None):
            if draft is None:
                raise SessionError("no draft model is loaded; use speculative='copy' or 'off'")
            if isinstance(draft, NeighbourTable):
                return NeighbourDrafter(draft, list(reference) if reference is not None else None)
            return ModelDrafter(draft)
        return CopyDrafter(list(reference) if reference is not None else None)

    # --- replying ---------------------------------------------------------------------------
    def _last_image_id(self, conversation: Conversation) -> str | None:
        """The id of the picture a new one derives from ("user-upload" for one given just now)."""
        i = conversation.last_image_index()
        if i is None:
            return None
        return self._meta[i].get("id") if i < len(self._meta) else "user-upload"

    def _run(self, user: Turn, settings: Settings, seed: int, n: int, previews: bool,
             region: list[bool] | None = None, decoders=None) -> Iterator[Event]:
        stream = self.model.stream
        conversation = self.conversation.append(user)
        try:
            fitted = stream.fit(conversation, self.model.context, reserve=REPLY_RESERVE)
        except StreamError as e:
            raise SessionError(f"that message does not fit in the model's context: {e}") from None
        cond = stream.encode(fitted, generation_prompt=True).ids
        uncond = stream.encode(fitted, generation_prompt=True, drop_last_user_text=True).ids
        reference_index = fitted.last_image_index()
        reference = fitted.turns[reference_index].codes if reference_index is not None else None
        fixed = None
        if region is not None:
            if reference is None:
                raise SessionError("a mask needs a picture to edit: attach one or draw one first")
            fixed = [None if redraw else code for redraw, code in zip(region, reference)]
            settings = replace(settings, picture="always")
        stats = SpeculationStats()
        text_ids: list[list[int]] = [[] for _ in range(n)]
        codes: list[list[int]] = [[] for _ in range(n)]
        canvas = PreviewCanvas(self.model.vq) if previews else None     # the first picture's previews
        for step in generate_ids(self.model.lm, stream, cond, uncond, config=settings.sampling(), n=n, seed=seed,
                                 drafter=self._drafter(settings, reference), stats=stats, fixed=fixed,
                                 decoders=decoders):
            for r, t in enumerate(step.tokens):
                if stream.is_text_id(t):
                    text_ids[r].append(t)
                elif stream.is_image_id(t):
                    codes[r].append(t - stream.image_offset)
            t0 = step.tokens[0]
            if stream.is_text_id(t0):
                yield Event("text", text=stream.text.decode(text_ids[0]))
            elif previews and stream.is_image_id(t0) and len(codes[0]) % IMAGE_SIDE == 0:
                yield Event("preview", image=self.preview(codes[0], canvas), rows=len(codes[0]) // IMAGE_SIDE)
        words = stream.text.decode(text_ids[0]).strip()
        pictures = [c for c in codes if len(c) == IMAGE_TOKENS]
        images = [self._finish(im, settings) for im in self._pictures(pictures, [seed] * len(pictures), settings, canvas)]
        ids = [f"img_{uuid.uuid4().hex[:12]}" for _ in pictures]
        reply = Reply(text=words, image=images[0] if images else None, images=images,
                      codes=tuple(pictures[0]) if pictures else None,
                      id=ids[0] if ids else f"msg_{uuid.uuid4().hex[:12]}", ids=ids, seed=seed,
                      prompt=user.text, parent=self._last_image_id(conversation) if pictures else None,
                      model=getattr(self.model, "name", "mmgen"), provenance=settings.provenance,
                      stats=stats if stats.rounds else None)
        if reply.image is not None:
            yield Event("image", image=reply.image)
        # only a finished reply changes the session: a stream stopped mid-picture leaves it as it was
        self.conversation = conversation.append(Turn(role="assistant", text=words, codes=reply.codes))
        self._meta += [{"seed": None, "id": None}, {"seed": seed, "id": reply.id}]
        yield Event("done", reply=reply)

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
        if self.moderation is not None:
            refusal = self.moderation(text, given)
            if refusal:
                # a refusal is an ordinary reply; the conversation the model sees is unchanged
                yield Event("text", text=refusal)
                yield Event("done", reply=Reply(text=refusal, refused=True, id=f"msg_{uuid.uuid4().hex[:12]}",
                                                prompt=text, model=getattr(self.model, "name", "mmgen")))
                return
        if not text.strip() and given is None:
            raise SessionError("the message is empty")
        codes = self._codes_of(given) if given is not None else None
        turn_seed = int(seed) if seed is not None else self.seed + 7919 * len(self.conversation.turns)
        yield from self._run(Turn(role="user", text=text, codes=codes), settings, turn_seed, n, previews, region,
                             decoders)

    def send(self, text: str, image=None, **kwargs) -> Reply:
        """Reply to `text` (and an optional picture: PIL image, path or bytes)."""
        for event in self.stream(text, image, previews=False, **kwargs):
            if event.kind == "done":
                return event.reply
        raise RuntimeError("the reply ended without finishing")

    # --- the conversation as a whole ------------------------------------------------------------
    def undo(self) -> bool:
        """Forget the last exchange (your message and the reply). False if there is none."""
        turns = list(self.conversation.turns)
        if not turns:
            return False
        cut = len(turns) - 1
        while cut > 0 and turns[cut].role != "user":
            cut -= 1
        self.conversation = Conversation(tuple(turns[:cut]))
        self._meta = self._meta[:cut]
        return True

    def retry_stream(self, seed: int | None = None, previews: bool = True, **overrides) -> Iterator[Event]:
        """Answer the last message again with a new seed, streaming; the last reply is replaced
        only when the new one is finished (stopping midway leaves the session as it was)."""
        turns = self.conversation.turns
        if len(turns) < 2 or turns[-2].role != "user":
            raise SessionError("there is no message to retry")
        user, old_seed = turns[-2], self._meta[-1].get("seed") or self.seed
        settings = self.settings.with_overrides(overrides)
        new_seed = int(seed) if seed is not None else old_seed + 1
        base = self.fork()
        base.undo()
        for event in base._run(user, settings, new_seed, 1, previews):
            if event.kind == "done":
                self.conversation, self._meta = base.conversation, base._meta
            yield event

    def retry(self, seed: int | None = None, **overrides) -> Reply:
        """Answer the last message again with a new seed (the last reply is replaced)."""
        for event in self.retry_stream(seed=seed, previews=False, **overrides):
            if event.kind == "done":
                return event.reply
        raise RuntimeError("the reply ended without finishing")

    def fork(self) -> "ChatSession":
        """An independent copy: what happens in one does not touch the other."""
        other = ChatSession(self.model, seed=self.seed, moderation=self.moderation, **asdict(self.settings))
        other.conversation = self.conversation
        other._meta = copy.deepcopy(self._meta)
        return other

    def new(self) -> None:
        """Start over (settings kept)."""
        self.conversation = Conversation()
        self._meta = []

    @property
    def history(self) -> list[HistoryItem]:
        turns = self.conversation.turns
        drawn = [(list(t.codes), m.get("seed")) for t, m in zip(turns, self._meta) if t.codes is not None]
        images = iter(self._pictures([c for c, _ in drawn], [s for _, s in drawn], self.settings))
        return [HistoryItem(role=t.role, text=t.text, image=next(images) if t.codes is not None else None,
                            seed=m.get("seed"), id=m.get("id")) for t, m in zip(turns, self._meta)]

    @property
    def last_image(self) -> Image.Image | None:
        i = self.conversation.last_image_index()
        if i is None:
            return None
        return self._pictures([list(self.conversation.turns[i].codes)], [self._meta[i].get("seed")], self.settings)[0]

    # --- files ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": SESSION_FORMAT, "model": getattr(self.model, "name", "mmgen"),
                "codebook_size": self.model.stream.codebook_size, "seed": self.seed,
                "settings": asdict(self.settings),
                "turns": [{"role": t.role, "text": t.text, "codes": list(t.codes) if t.codes is not None else None,
                           "seed": m.get("seed"), "id": m.get("id")} for t, m in zip(self.conversation.turns, self._meta)]}

    def save(self, path: str | Path) -> Path:
        """Write the session (exact picture codes included) atomically: temp file + rename."""
        path = Path(path)
        atomic_write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str | Path, model, moderation: Moderation | None = None) -> "ChatSession":
        """Read a session file; a damaged or foreign file raises SessionError and changes nothing."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SessionError(f"no session file at {path}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SessionError(f"{path} is not a session file ({type(e).__name__})") from None
        if not isinstance(data, dict) or data.get("format") != SESSION_FORMAT:
            raise SessionError(f"{path} is not an mmgen session (format {SESSION_FORMAT!r} expected)")
        if data.get("codebook_size") != model.stream.codebook_size:
            raise SessionError(f"{path} was saved with a different image tokenizer "
                               f"({data.get('codebook_size')} codes, this model has {model.stream.codebook_size})")
        try:
            session = cls(model, seed=data["seed"], moderation=moderation, **data["settings"])
            turns, meta = [], []
            for t in data["turns"]:
                codes = t.get("codes")
                if codes is not None and any(not isinstance(c, int) or not 0 <= c < model.stream.codebook_size
                                             for c in codes):
                    raise SessionError(f"{path}: a picture has codes outside the codebook")
                turns.append(Turn(role=t["role"], text=t["text"], codes=tuple(codes) if codes is not None else None))
                meta.append({"seed": t.get("seed"), "id": t.get("id")})
        except SessionError:
            raise
        except (KeyError, TypeError, ValueError, StreamError) as e:
            raise SessionError(f"{path} is damaged: {type(e).__name__}: {e}") from None
        session.conversation = Conversation(tuple(turns))
        session._meta = meta
        return session
