"""A chat session: turns of words and pictures, the public Python API.

    chat = mmgen.load().chat(seed=0)
    reply = chat.send("draw a red circle at the top left")   # Reply: .text, .image, .id, .save(path)
    reply = chat.send("make it blue")                         # edits the last picture
    for event in chat.stream("add a star at the top"):       # words, a preview per row, the picture
        ...

The conversation keeps the exact codes of every picture, so the next edit conditions on what
was drawn, never on a re-encoding of the pixels. Pictures the user gives are VQ-encoded once.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import torch
from PIL import Image

from .generate import generate_ids
from .sampling import SamplingConfig
from .stream import IMAGE_SIDE, IMAGE_TOKENS, Conversation, Turn

REPLY_RESERVE = IMAGE_TOKENS + 80        # ids kept free in the context for the reply
MAX_PROMPT_CHARS = 2000                  # longer messages are refused with a message
_ids = itertools.count(1)


@dataclass
class Settings:
    """Per-session defaults; any of them can be overridden per call."""
    cfg: float = 3.0
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p, cfg=self.cfg)


@dataclass
class Reply:
    text: str
    image: Image.Image | None = None
    images: list[Image.Image] = field(default_factory=list)
    codes: tuple[int, ...] | None = None
    id: str = ""
    seed: int | None = None

    def save(self, path: str | Path) -> Path:
        if self.image is None:
            raise ValueError("this reply has no picture to save")
        path = Path(path)
        self.image.save(path)
        return path


@dataclass
class Event:
    """One thing that happened while replying: kind is 'text', 'preview', 'image' or 'done'."""
    kind: str
    text: str = ""                   # 'text': the words so far
    image: Image.Image | None = None # 'preview': rows drawn so far; 'image': the final picture
    rows: int = 0                    # 'preview': how many rows of codes are done
    reply: Reply | None = None       # 'done'


class ChatSession:
    def __init__(self, model, seed: int | None = None, **settings):
        self.model = model
        self.settings = Settings(**settings)
        self.seed = seed if seed is not None else int(torch.seed() % 2**31)
        self.conversation = Conversation()
        self._turn_seeds: list[int | None] = []

    # --- helpers ----------------------------------------------------------------------------
    def _codes_of(self, image) -> tuple[int, ...]:
        if isinstance(image, (str, Path)):
            path = Path(image)
            try:
                with Image.open(path) as im:
                    image = im.convert("RGB")
            except (OSError, ValueError) as e:
                raise ValueError(f"cannot read the picture {path}: {e}") from None
        ids = self.model.vq.encode(image)
        return tuple(ids[0].reshape(-1).tolist())

    def _prompt(self, conversation: Conversation) -> tuple[list[int], list[int]]:
        fitted = self.model.stream.fit(conversation, self.model.context, reserve=REPLY_RESERVE)
        cond = self.model.stream.encode(fitted, generation_prompt=True).ids
        uncond = self.model.stream.encode(fitted, generation_prompt=True, drop_last_user_text=True).ids
        return cond, uncond

    def preview(self, codes: list[int]) -> Image.Image:
        """The rows drawn so far, decoded; the rows still to come shown flat grey."""
        rows = len(codes) // IMAGE_SIDE
        full = list(codes[:rows * IMAGE_SIDE]) + [codes[0] if codes else 0] * (IMAGE_TOKENS - rows * IMAGE_SIDE)
        img = self.model.vq.decode(torch.tensor(full).view(1, IMAGE_SIDE, IMAGE_SIDE))[0]
        cut = rows * img.height // IMAGE_SIDE
        if cut < img.height:
            img.paste((128, 128, 128), (0, cut, img.width, img.height))
        return img

    # --- the public API -----------------------------------------------------------------------
    def stream(self, text: str, image=None, *, n: int = 1, seed: int | None = None,
               allow_image: bool = True, previews: bool = True, **overrides) -> Iterator[Event]:
        """Reply to `text` (and an optional picture), yielding events as they happen."""
        if not isinstance(text, str):
            raise TypeError(f"a message is text, not {type(text).__name__}")
        if len(text) > MAX_PROMPT_CHARS:
            raise ValueError(f"the message is {len(text)} characters; the limit is {MAX_PROMPT_CHARS}")
        codes_in = self._codes_of(image) if image is not None else None
        settings = replace(self.settings, **overrides)
        turn_seed = seed if seed is not None else self.seed + 7919 * len(self.conversation.turns)
        user = Turn(role="user", text=text, codes=codes_in)
        conversation = self.conversation.append(user)
        cond, uncond = self._prompt(conversation)
        stream = self.model.stream
        text_ids: list[list[int]] = [[] for _ in range(n)]
        codes: list[list[int]] = [[] for _ in range(n)]
        for step in generate_ids(self.model.lm, stream, cond, uncond, config=settings.sampling(), n=n,
                                 seed=turn_seed, allow_image=allow_image):
            for r, t in enumerate(step.tokens):
                if stream.is_text_id(t):
                    text_ids[r].append(t)
                elif stream.is_image_id(t):
                    codes[r].append(t - stream.image_offset)
            t0 = step.tokens[0]
            if stream.is_text_id(t0):
                yield Event("text", text=stream.text.decode(text_ids[0]))
            elif previews and stream.is_image_id(t0) and len(codes[0]) % IMAGE_SIDE == 0:
                yield Event("preview", image=self.preview(codes[0]), rows=len(codes[0]) // IMAGE_SIDE)
        words = stream.text.decode(text_ids[0]).strip()
        pictures = [c for c in codes if len(c) == IMAGE_TOKENS]
        images = self.model.vq.decode(torch.tensor(pictures).view(-1, IMAGE_SIDE, IMAGE_SIDE)) if pictures else []
        reply = Reply(text=words, image=images[0] if images else None, images=images,
                      codes=tuple(pictures[0]) if pictures else None, id=f"img_{next(_ids):06d}", seed=turn_seed)
        if reply.image is not None:
            yield Event("image", image=reply.image)
        self.conversation = conversation.append(Turn(role="assistant", text=words, codes=reply.codes))
        self._turn_seeds += [None, turn_seed]
        yield Event("done", reply=reply)

    def send(self, text: str, image=None, **kwargs) -> Reply:
        """Reply to `text` (and an optional picture: PIL image or path)."""
        for event in self.stream(text, image, previews=False, **kwargs):
            if event.kind == "done":
                return event.reply
        raise RuntimeError("the reply ended without finishing")
