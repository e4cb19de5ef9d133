"""Undo asked for in words ("undo that", "put it back"): the chat's own undo, not the model's.

WORLD.md gives undo to the chat, not the model: the picture before a change is already in the
conversation, exactly, and a model never taught these words would read them as a request to draw.
A message that is only a request to undo (with politeness around it) is recognised here; when
it comes as a chat message (one reply, the model left to decide whether to draw: not the images
API, which always draws), `ChatSession.stream` forgets the last exchange that brought or drew a
picture, and what was said after it, and shows the picture before it.

    is_undo_request("undo that please")          # True
    is_undo_request("oops, put it back")         # True
    is_undo_request("undo the red circle")       # False: more than a request to undo
"""
from __future__ import annotations

import re

REQUESTS = ("undo", "undo that", "undo it", "undo this", "undo that change", "undo the last change",
            "undo the last edit", "undo the last step", "undo last", "go back", "go back one step",
            "go back a step", "put it back", "put it back the way it was", "put it back how it was",
            "change it back", "revert", "revert that", "revert it", "take that back",
            "back to the previous picture", "go back to the previous picture", "back to the last picture",
            "go back to the last picture")
BEFORE = ("please", "pls", "can you", "could you", "ok", "okay", "oops", "hmm", "no", "nah", "actually",
          "oh", "ugh", "sorry")
AFTER = ("please", "pls", "thanks", "thank you")

UNDONE = "Undone: here is the picture from before."
UNDONE_TO_NOTHING = "Undone: there's no picture now."
NOTHING_TO_UNDO = "There's nothing to undo yet: no picture has been drawn."


def _either(phrases) -> str:
    """A regex matching any of `phrases`, a word gap being any run of spaces (longest first)."""
    return "|".join(r"\s+".join(map(re.escape, p.split())) for p in sorted(phrases, key=len, reverse=True))


_UNDO = re.compile(rf"\s*(?:(?:{_either(BEFORE)})[\s,.!]+)*(?:{_either(REQUESTS)})"
                   rf"(?:[\s,.!]+(?:{_either(AFTER)}))*[\s.!?]*", re.IGNORECASE)


def is_undo_request(text: str) -> bool:
    """Whether `text` is only a request to undo the last change (REQUESTS, with BEFORE and AFTER words)."""
    return _UNDO.fullmatch(text) is not None
