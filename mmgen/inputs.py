"""What a person types, checked once for every way in: the Python API, the command line, the
terminal chat and the server all call `check_text`, so the same mistake reads the same everywhere.

No torch here: the command line checks its arguments before loading anything heavy.
"""
from __future__ import annotations

import unicodedata

MAX_MESSAGE_CHARS = 4000                 # longer messages are refused with a message
ALLOWED_CONTROLS = "\t\n\r"


class SessionError(ValueError):
    """Bad input to a session (message, picture, setting or session file), with a clear message."""


class TextTooLong(SessionError):
    """A message past the length limit (the server answers it with its own error code)."""


def check_text(text, what: str = "the message", *, limit: int = MAX_MESSAGE_CHARS, allow_empty: bool = False) -> str:
    """`text` if a person could have meant it as a message, else SessionError with one clear sentence.

    `what` names the text in that sentence ("the prompt", "'input'"). Bytes that were not UTF-8
    reach Python as lone surrogates (argv, a terminal paste read with surrogateescape, a JSON
    "\\udcff"); the tokenizer cannot take them, so they are refused here, by name."""
    if not isinstance(text, str):
        raise SessionError(f"{what} must be text, not {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise SessionError(f"{what} is not UTF-8 text: it holds bytes in another encoding "
                           "(or binary data); paste it again as UTF-8") from None
    if any(unicodedata.category(ch) == "Cc" and ch not in ALLOWED_CONTROLS for ch in text):
        raise SessionError(f"{what} contains control characters (binary data?)")
    if len(text) > limit:
        raise TextTooLong(f"{what} is {len(text):,} characters; the limit is {limit:,}")
    if not allow_empty and not text.strip():
        raise SessionError(f"{what} is empty")
    return text
