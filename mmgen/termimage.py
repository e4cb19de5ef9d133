"""Pictures in the terminal: which protocol a terminal speaks, an encoder for each, and a
`Canvas` that redraws a picture in place while its rows arrive.

    mode = detect(os.environ, sys.stdout.isatty())   # 'kitty' | 'iterm' | 'sixel' | 'blocks' | 'none'
    canvas = Canvas(sys.stdout, mode, lines=16)
    for preview in previews:
        canvas.draw(preview)          # the first draw makes room; later ones overwrite it
    canvas.close()                    # cursor on the line below the picture

Encoders (each returns the text to write):
  halfblocks  Unicode ▀ with a 24-bit foreground (upper pixel) and background (lower pixel)
  kitty       kitty graphics protocol: PNG, base64, 4096-byte chunks (sw.kovidgoyal.net/kitty/graphics-protocol)
  iterm       iTerm2 inline images: OSC 1337 File=…  (iterm2.com/documentation-images.html)
  sixel       DEC sixel, up to 256 colours, run-length encoded
Pure functions of a PIL image; only `Canvas` and `terminal_size` touch a real terminal.
"""
from __future__ import annotations

import base64
import io
import os
from typing import Mapping, TextIO

import numpy as np
from PIL import Image

MODES = ("kitty", "iterm", "sixel", "blocks", "none")
KITTY_CHUNK = 4096                    # base64 bytes per kitty escape (the protocol's limit)
UPPER_HALF = "\u2580"                 # ▀
RESET = "\x1b[0m"
CHECKER = ((204, 204, 204), (153, 153, 153))   # shows through transparent pixels in text modes
SIXEL_TERMS = ("foot", "mlterm", "yaft", "contour")


def detect(env: Mapping[str, str], isatty: bool) -> str:
    """The best picture mode for a terminal described by its environment variables.

    Inside tmux or screen the outer terminal's variables are inherited but its graphics are not
    passed through, so half-blocks are the safe choice there.
    """
    term, program = env.get("TERM", ""), env.get("TERM_PROGRAM", "")
    if not isatty or term == "dumb":
        return "none"
    if env.get("TMUX") or env.get("STY") or term.startswith(("screen", "tmux")):
        return "blocks"
    if env.get("KITTY_WINDOW_ID") or term in ("xterm-kitty", "xterm-ghostty") or program == "ghostty":
        return "kitty"
    if program in ("iTerm.app", "WezTerm", "mintty") or env.get("LC_TERMINAL") == "iTerm2":
        return "iterm"
    if term.startswith(SIXEL_TERMS):
        return "sixel"
    return "blocks"


def terminal_size(fd: int) -> tuple[int, int, int, int]:
    """(columns, lines, cell width px, cell height px) of the terminal at fd; pixels 0 if unknown."""
    try:
        import fcntl
        import struct
        import termios
        lines, cols, xpix, ypix = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except (ImportError, OSError):
        size = os.get_terminal_size(fd) if os.isatty(fd) else os.terminal_size((80, 24))
        return size.columns, size.lines, 0, 0
    if not cols or not lines:
        return 80, 24, 0, 0
    return cols, lines, xpix // cols if xpix else 0, ypix // lines if ypix else 0


def flatten(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """RGB at `size`; transparent parts over a checkerboard (4-pixel squares) so they can be seen."""
    image = image.resize(size, Image.Resampling.BOX) if image.size != size else image
    if image.mode == "RGB":
        return image
    rgba = image.convert("RGBA")
    y, x = np.mgrid[0:size[1], 0:size[0]]
    board = np.where((((x // 4) + (y // 4)) % 2 == 0)[..., None], CHECKER[0], CHECKER[1]).astype(np.uint8)
    background = Image.fromarray(board, "RGB")
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def halfblocks(image: Image.Image, cols: int) -> list[str]:
    """One string per terminal line: each cell is ▀, foreground = upper pixel, background = lower.

    The picture is scaled to `cols` pixels wide (and an even number of pixels high); colour codes
    are written only when they change along a line, and every line ends with a reset.
    """
    lines = max(1, round(image.height * cols / image.width / 2))
    px = np.asarray(flatten(image, (cols, 2 * lines)))
    out = []
    for row in range(lines):
        parts, fg, bg = [], None, None
        for top, bottom in zip(px[2 * row].tolist(), px[2 * row + 1].tolist()):
            if top != fg:
                parts.append("\x1b[38;2;%d;%d;%dm" % tuple(top))
                fg = top
            if bottom != bg:
                parts.append("\x1b[48;2;%d;%d;%dm" % tuple(bottom))
                bg = bottom
            parts.append(UPPER_HALF)
        out.append("".join(parts) + RESET)
    return out


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def kitty(image: Image.Image, lines: int, image_id: int = 1) -> str:
    """Transmit-and-display a PNG scaled to `lines` cells high, leaving the cursor where it was (C=1).

    q=2 silences the terminal's replies, which would otherwise arrive on stdin as keystrokes.
    Only the first chunk carries the keys; m=1 says more chunks follow.
    """
    data = base64.standard_b64encode(png_bytes(image)).decode("ascii")
    chunks = [data[i:i + KITTY_CHUNK] for i in range(0, len(data), KITTY_CHUNK)] or [""]
    out = []
    for i, chunk in enumerate(chunks):
        more = int(i < len(chunks) - 1)
        keys = f"a=T,f=100,i={image_id},r={lines},C=1,q=2,m={more}" if i == 0 else f"m={more}"
        out.append(f"\x1b_G{keys};{chunk}\x1b\\")
    return "".join(out)


def kitty_delete(image_id: int) -> str:
    """Free a kitty image and its placements (d=I: by id, data too)."""
    return f"\x1b_Ga=d,d=I,i={image_id},q=2\x1b\\"


def iterm(image: Image.Image, lines: int) -> str:
    """iTerm2 inline image, `lines` cells high, width following the aspect ratio."""
    data = png_bytes(image)
    return (f"\x1b]1337;File=inline=1;size={len(data)};height={lines};preserveAspectRatio=1:"
            f"{base64.standard_b64encode(data).decode('ascii')}\x07")


def _sixel_runs(chars: str) -> str:
    """Run-length encode sixel characters: '!<count><char>' where that is shorter."""
    out, i = [], 0
    while i < len(chars):
        j = i
        while j < len(chars) and chars[j] == chars[i]:
            j += 1
        n = j - i
        out.append(f"!{n}{chars[i]}" if n > 3 else chars[i] * n)
        i = j
    return "".join(out)


def sixel(image: Image.Image, size: tuple[int, int], colors: int = 256) -> str:
    """DEC sixel at `size` pixels: a palette (RGB in percent), then bands of six pixel rows, each
    band one pass per colour it uses ('$' returns to the band's start, '-' goes to the next band)."""
    rgb = flatten(image, size)
    indexed = rgb.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    idx = np.asarray(indexed)
    palette = indexed.getpalette()
    w, h = size
    out = ["\x1bP0;1;0q", f'"1;1;{w};{h}']
    for c in np.unique(idx).tolist():
        r, g, b = palette[3 * c:3 * c + 3]
        out.append(f"#{c};2;{round(r * 100 / 255)};{round(g * 100 / 255)};{round(b * 100 / 255)}")
    weights = (1 << np.arange(6))[:, None]            # pixel row k of a band is bit k
    for top in range(0, h, 6):
        band = idx[top:top + 6]
        used = np.unique(band).tolist()
        passes = []
        for c in used:
            bits = ((band == c) * weights[:len(band)]).sum(0)
            passes.append(f"#{c}" + _sixel_runs("".join(chr(63 + int(v)) for v in bits)))
        out.append("$".join(passes) + "-")
    out.append("\x1b\\")
    return "".join(out)


class Canvas:
    """A picture area of `lines` terminal lines at the cursor, redrawn in place.

    The first draw prints `lines` newlines (scrolling now, if the screen is full) and goes back
    up, so later draws never scroll and can return to the top with a relative cursor move. After
    each draw the cursor sits at the start of the line below the picture.
    """

    def __init__(self, out: TextIO, mode: str, lines: int, cell: tuple[int, int] = (0, 0), image_id: int = 1):
        if mode not in MODES:
            raise ValueError(f"picture mode must be one of {', '.join(MODES)}")
        self.out, self.mode, self.lines, self.image_id = out, mode, lines, image_id
        cell_w, cell_h = cell
        self.cell = (cell_w or 10, cell_h or 20)    # guess for sixel when the terminal does not say
        self.drawn = False
        self.shown: list[str] = []       # blocks: the lines on screen, so a redraw writes only changes

    def redraw_blocks(self, lines: list[str]) -> str:
        """Half-block lines that differ from those on screen; unchanged ones are skipped (cursor down)."""
        parts, skip = [], 0
        for i, line in enumerate(lines):
            if i < len(self.shown) and self.shown[i] == line:
                skip += 1
                continue
            if skip:
                parts.append(f"\x1b[{skip}B")
                skip = 0
            parts.append(line + "\n")
        skip += max(0, self.lines - len(lines))       # a picture wider than tall uses fewer lines
        if skip:
            parts.append(f"\x1b[{skip}B")
        self.shown = lines
        return "".join(parts)

    def payload(self, image: Image.Image) -> str:
        """What to write with the cursor at the top-left of the area; leaves it below the area."""
        down = f"\x1b[{self.lines}B\r"
        if self.mode == "blocks":
            return self.redraw_blocks(halfblocks(image, 2 * self.lines)[:self.lines])
        if self.mode == "kitty":   # C=1: the cursor stays at the top-left
            return (kitty_delete(self.image_id) if self.drawn else "") + kitty(image, self.lines, self.image_id) + down
        # iTerm2 and sixel move the cursor themselves: save it (DECSC), draw, restore it (DECRC)
        if self.mode == "iterm":
            return "\x1b7" + iterm(image, self.lines) + "\x1b8" + down
        side = self.lines * self.cell[1]
        return "\x1b7" + sixel(image, (side, side)) + "\x1b8" + down

    def draw(self, image: Image.Image) -> None:
        if self.mode == "none":
            return
        start = f"\x1b[{self.lines}A" if self.drawn else "\n" * self.lines + f"\x1b[{self.lines}A"
        text = start + self.payload(image)
        self.drawn = True
        self.out.write(text)
        self.out.flush()

    def close(self) -> None:
        """Reset colours (a draw cut short by Ctrl-C may have left some set)."""
        if self.mode != "none" and self.drawn:
            self.out.write(RESET)
            self.out.flush()
