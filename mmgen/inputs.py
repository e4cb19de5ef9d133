"""What a person sends, checked once for every way in: the Python API, the command line, the
terminal chat and the server all call these checks, so the same mistake reads the same everywhere.

- `check_text`: a message, a prompt, a question.
- `check_count`: how many pictures one reply draws (MAX_PICTURES at most).
- `check_seed`: a random seed (0 to MAX_SEED).
- `read_image`: a picture given as a PIL image, a path or bytes; `user_path`: a path as typed.
- `mask_grid` (and `redrawn_patches`, the rule it applies): the region of a picture an edit may change.

No torch here, and PIL and numpy only once a picture comes: the command line checks its text and
options before loading anything heavy.
"""
from __future__ import annotations

import io
import operator
import unicodedata
import warnings
from pathlib import Path

MAX_MESSAGE_CHARS = 4000                 # longer messages are refused with a message
ALLOWED_CONTROLS = "\t\n\r"
MAX_PICTURES = 4                         # the most pictures one reply draws (one batch)
MAX_IMAGE_BYTES = 20 * 2**20             # the largest picture file read from a path
GRID_SIDE = 16                           # a mask grid's side: one cell per code of the 16 × 16 picture grid
PATCH_PIXELS = 8                         # a code's patch, in pixels each way (at 128 × 128)
# a seed is 0 … MAX_SEED everywhere (the server's documented range; a fresh one is drawn from it),
# so a seed a reply reports can always be given back
MAX_SEED = 2**31 - 1
NAME_MAX = 255                           # the longest file name (one part of a path), in bytes, on common file systems


class SessionError(ValueError):
    """Bad input to a session (message, picture, setting or session file), with a clear message."""


class NotAQuestion(SessionError):
    """A message given to ask() wants a picture changed or drawn: the model began to draw."""


class TextTooLong(SessionError):
    """A message past the length limit (the server answers it with its own error code)."""


def check_text(text, what: str = "the message", *, limit: int = MAX_MESSAGE_CHARS, allow_empty: bool = False) -> str:
    """`text` if a person could have meant it as a message, else SessionError with one clear sentence.

    `what` names the text in that sentence ("the prompt", "'input'"). Bytes that were not UTF-8
    reach Python as lone surrogates (argv, a terminal paste read with surrogateescape, a JSON
    "\\udcff"); the tokenizer cannot take them, so they are refused here, by name."""
    check_is_text(text, what)
    if any(unicodedata.category(ch) == "Cc" and ch not in ALLOWED_CONTROLS for ch in text):
        raise SessionError(f"{what} contains control characters (binary data?)")
    if len(text) > limit:
        raise TextTooLong(f"{what} is {len(text):,} characters; the limit is {limit:,}")
    if not allow_empty and not text.strip():
        raise SessionError(f"{what} is empty")
    return text


def check_is_text(text, what: str) -> str:
    """`text` if it is a str the tokenizer can read (UTF-8, no lone surrogates), else SessionError."""
    if not isinstance(text, str):
        raise SessionError(f"{what} must be text, not {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise SessionError(f"{what} is not UTF-8 text: it holds bytes in another encoding "
                           "(or binary data); paste it again as UTF-8") from None
    return text


def check_count(n) -> int:
    """`n`, the number of pictures one reply draws, if it is an integer from 1 to MAX_PICTURES."""
    if not isinstance(n, int) or not 1 <= n <= MAX_PICTURES:
        raise SessionError(f"n must be an integer from 1 to {MAX_PICTURES}")
    return n


def check_seed(seed) -> int:
    """`seed` as an int if it is an integer from 0 to MAX_SEED, else SessionError naming the range."""
    try:
        value = None if isinstance(seed, bool) else operator.index(seed)
    except TypeError:
        value = None
    if value is None or not 0 <= value <= MAX_SEED:
        raise SessionError(f"seed must be an integer from 0 to {MAX_SEED}, not {str(seed)[:40]}")
    return value


def seed_after(seed: int, steps: int = 1) -> int:
    """The seed `steps` on from `seed`, wrapping within 0 … MAX_SEED (a later turn's or a retry's seed)."""
    return (seed + steps) % (MAX_SEED + 1)


def user_path(path: str | Path) -> Path:
    """A file path as a person typed it, `~` expanded the way a shell does it: where it names a home
    folder, else kept as written ("~draft.png" is a file here; Path.expanduser would raise for it).
    A name no file can have (a NUL, a part over NAME_MAX bytes) is a SessionError, not an OSError later."""
    text = str(path)
    if "\0" in text:
        raise SessionError("a file name cannot contain a NUL character")
    try:
        longest = max((len(part.encode("utf-8", "surrogateescape")) for part in Path(text).parts), default=0)
    except UnicodeEncodeError:
        raise SessionError("a file name must be text a file system can hold (it has a lone surrogate)") from None
    if longest > NAME_MAX:
        raise SessionError(f"the file name {text[:40]}… is too long (a part of it over {NAME_MAX} bytes)")
    try:
        return Path(text).expanduser()
    except RuntimeError:              # "~name" where no user is called name
        return Path(text)


def read_image(image):
    """A PIL image from a PIL image, a path or bytes; a clear SessionError otherwise."""
    from PIL import Image, UnidentifiedImageError
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, (bytes, bytearray)):
        source, name = io.BytesIO(image), "the uploaded picture"
    elif isinstance(image, (str, Path)):
        source, name = user_path(image), str(image)
        if not source.is_file():
            raise SessionError(f"no picture at {name}")
        if source.stat().st_size > MAX_IMAGE_BYTES:
            raise SessionError(f"{name} is larger than {MAX_IMAGE_BYTES // 2**20} MB")
    else:
        raise SessionError(f"a picture must be a PIL image, a path or bytes, not {type(image).__name__}")
    try:
        with warnings.catch_warnings():     # PIL only warns from 89 M pixels up to twice that: refuse those too
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                im.load()
                return im.copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise SessionError(f"cannot read {name} as a picture: it has too many pixels to open safely") from None
    except UnidentifiedImageError:
        raise SessionError(f"cannot read {name} as a picture: it is not a PNG, JPEG, WEBP or other picture "
                           "file") from None
    except OSError as e:              # no permission, … (errno set), or a picture that ends too soon
        reason = e.strerror if e.errno else "the file is damaged or cut short"
        raise SessionError(f"cannot read {name} as a picture: {reason}") from None
    except ValueError:
        raise SessionError(f"cannot read {name} as a picture: the file is damaged") from None


def redrawn_patches(alpha) -> list[bool]:
    """The rule a mask picture follows (OpenAI's edits convention: where alpha is 0 the picture may
    change), as 256 booleans in raster order: a code's 8 × 8 patch, with the mask at 128 × 128, is
    redrawn if any of its pixels has alpha under half. `alpha`: the mask's alpha channel (mode L)."""
    import numpy as np
    from PIL import Image
    side = GRID_SIDE * PATCH_PIXELS
    a = np.asarray(alpha.resize((side, side), Image.Resampling.NEAREST))
    patches = a.reshape(GRID_SIDE, PATCH_PIXELS, GRID_SIDE, PATCH_PIXELS)
    return (patches < 128).any(axis=(1, 3)).reshape(-1).tolist()


def mask_grid(mask) -> list[bool]:
    """A region to redraw as 256 booleans (True = redraw), from a 16 × 16 grid of booleans or a
    mask picture with alpha (redrawn_patches)."""
    import numpy as np
    from PIL import Image
    if isinstance(mask, (Image.Image, str, Path, bytes, bytearray)):
        im = read_image(mask)
        if "A" not in im.getbands():
            raise SessionError("a mask picture needs an alpha channel (alpha 0 = the region to change)")
        cells = redrawn_patches(im.getchannel("A"))
    else:
        try:
            grid = np.asarray(mask)
        except (TypeError, ValueError, RuntimeError):
            grid = None
        if grid is None or grid.dtype.kind not in "biuf":      # booleans, or numbers read as booleans
            raise SessionError("a mask is a picture with alpha or a 16 × 16 grid of booleans")
        grid = grid.astype(bool)
        if grid.shape != (GRID_SIDE, GRID_SIDE):
            raise SessionError(f"a mask grid must be {GRID_SIDE} × {GRID_SIDE}, got {tuple(grid.shape)}")
        cells = grid.reshape(-1).tolist()
    if not any(cells):
        raise SessionError("the mask marks nothing to change")
    return cells
