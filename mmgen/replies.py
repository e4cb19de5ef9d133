"""What a chat hands back: a finished reply, the events of one being streamed, the turns so far.

    reply = chat.send("draw a red circle")        # Reply: .text, .image, .id, .save(path)
    for event in chat.stream("make it blue"):     # Event: 'text', 'preview', 'image', then 'done'
        ...
    chat.history                                  # [HistoryItem]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from .imageutil import save_image
from .inputs import SessionError
from .speculative import SpeculationStats


@dataclass
class Reply:
    """A finished reply: its words, its pictures (a batch of n) with their codes and provenance."""
    text: str
    image: Image.Image | None = None
    images: list[Image.Image] = field(default_factory=list)
    codes: tuple[int, ...] | None = None
    id: str = ""                       # the reply's id: its first picture's, else a message id
    ids: list[str] = field(default_factory=list)     # one provenance id per picture; ids[0] == id
    seed: int | None = None            # the reply's seed; a batch of n is drawn with it together
    prompt: str = ""
    parent: str | None = None          # id of the picture this one edits
    model: str = ""
    refused: bool = False
    provenance: bool = True
    stats: SpeculationStats | None = None
    prompt_ids: list[int] = field(default_factory=list)   # the stream ids the transformer read (none if refused)
    note: str = ""                     # about the message's words the model was never taught (unknown_words)
    undo: bool = False                 # an undo asked for in words: the chat answered, not the model (typed_undo)

    def metadata(self, index: int = 0) -> dict[str, str]:
        """Provenance of picture `index`: its own id, and for a batch its place in it ("2/3"). The
        pictures of a batch are drawn together from the reply's seed (one generator, shared words),
        so it is the seed, n and the place together that draw one of them again."""
        meta = {"Software": "mmgen", "mmgen:prompt": self.prompt, "mmgen:seed": str(self.seed),
                "mmgen:model": self.model, "mmgen:id": self.ids[index] if self.ids else self.id,
                "mmgen:parent": self.parent or ""}
        if len(self.images) > 1:
            meta["mmgen:batch"] = f"{index + 1}/{len(self.images)}"
        return meta

    def save(self, path: str | Path, index: int = 0) -> Path:
        """Save picture `index` (PNG/WEBP/JPEG by extension), with provenance metadata unless turned off."""
        if not self.images:
            raise SessionError("this reply has no picture to save")
        return save_image(self.images[index], path, self.metadata(index), provenance=self.provenance)


@dataclass
class Event:
    """One thing that happened while replying: kind is 'text', 'preview', 'image' or 'done'."""
    kind: str
    text: str = ""                     # 'text': the words so far
    image: Image.Image | None = None   # 'preview': rows drawn so far; 'image': the final picture
    rows: int = 0                      # 'preview': rows of codes done (of 16)
    reply: Reply | None = None         # 'done'


@dataclass
class HistoryItem:
    """One turn of the conversation as shown: a drawn picture decoded (and refined) as its reply showed it."""
    role: str
    text: str
    image: Image.Image | None
    seed: int | None
    id: str | None
