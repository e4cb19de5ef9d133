"""Render a `Scene` to a 128 × 128 RGB picture: exact palette, anti-aliased edges, deterministic.

Shapes are drawn as masks at `SUPERSAMPLE`× in a small patch around each object, box-filtered
down to an alpha mask and composited in their flat colour — so edges are anti-aliased and the
same scene always gives the same bytes. Words use Pillow's built-in font
(`ImageFont.load_default(size=...)`), emboldened with a one-pixel stroke and spaced so letters
never touch: thin, touching glyphs are what an 8 × 8-patch tokenizer smudges first.
"""
from __future__ import annotations

import math
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from .scene import ALL_COLORS, BACKGROUND_COLORS, CANVAS, OBJECT_COLORS, Obj, Scene, Sign, band_span

SUPERSAMPLE = 4
FONT_SIZE = 20
FONT_STROKE = 1                  # px of stroke in the text colour: a bold face from the default font
LETTER_SPACING = 2               # px added between letters
PLAQUE_PAD_X = 6
PLAQUE_PAD_Y = 5
PLAQUE_RADIUS = 6
STAR_INNER_RATIO = 0.382         # inner/outer radius of a regular five-pointed star
CROSS_ARM = 1 / 3                # arm thickness as a fraction of the side


def _star_points() -> list[tuple[float, float]]:
    pts = []
    for k in range(10):
        r = 1.0 if k % 2 == 0 else STAR_INNER_RATIO
        a = -math.pi / 2 + k * math.pi / 5
        pts.append((r * math.cos(a), r * math.sin(a)))
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    # stretch to fill the unit box, so the star's box is its size like every other shape
    return [((x - min(xs)) / (max(xs) - min(xs)), (y - min(ys)) / (max(ys) - min(ys))) for x, y in pts]


_a, _b = (1 - CROSS_ARM) / 2, (1 + CROSS_ARM) / 2
# Polygons in the unit box [0,1]²; the circle is drawn as an ellipse.
UNIT_POLYGONS: dict[str, list[tuple[float, float]]] = {
    "square": [(0, 0), (1, 0), (1, 1), (0, 1)],
    "triangle": [(0.5, 0), (1, 1), (0, 1)],
    "diamond": [(0.5, 0), (1, 0.5), (0.5, 1), (0, 0.5)],
    "cross": [(_a, 0), (_b, 0), (_b, _a), (1, _a), (1, _b), (_b, _b), (_b, 1), (_a, 1), (_a, _b), (0, _b), (0, _a), (_a, _a)],
    "star": _star_points(),
}


def shape_mask(shape: str, box: tuple[float, float, float, float]) -> tuple[Image.Image, tuple[int, int]]:
    """An anti-aliased 'L' mask of a shape filling `box`, and where its top-left corner goes."""
    x0, y0, x1, y1 = box
    left, top = math.floor(x0) - 1, math.floor(y0) - 1
    w, h = math.ceil(x1) + 1 - left, math.ceil(y1) + 1 - top
    s = SUPERSAMPLE
    big = Image.new("L", (w * s, h * s), 0)
    d = ImageDraw.Draw(big)
    # box corners in supersampled patch coordinates
    bx0, by0, bx1, by1 = ((x0 - left) * s, (y0 - top) * s, (x1 - left) * s, (y1 - top) * s)
    if shape == "circle":
        d.ellipse((bx0, by0, bx1 - 1, by1 - 1), fill=255)
    else:
        pts = [(bx0 + u * (bx1 - bx0), by0 + v * (by1 - by0)) for u, v in UNIT_POLYGONS[shape]]
        d.polygon(pts, fill=255)
    return big.resize((w, h), Image.Resampling.BOX), (left, top)


@lru_cache(maxsize=1)
def font() -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=FONT_SIZE)


@lru_cache(maxsize=1)
def _cap_box() -> tuple[int, int]:
    """(top, bottom) of a capital letter relative to the text origin (with the stroke)."""
    _, top, _, bottom = font().getbbox("H", stroke_width=FONT_STROKE)
    return top, bottom


@lru_cache(maxsize=4096)
def word_layout(word: str) -> tuple[tuple[float, ...], float]:
    """x offset of each letter from the word's left edge, and the word's total width."""
    xs, x = [], 0.0
    f = font()
    for i, ch in enumerate(word):
        xs.append(x)
        x += f.getlength(ch) + (LETTER_SPACING if i < len(word) - 1 else 0)
    return tuple(xs), x + 2 * FONT_STROKE


def text_box(sign: Sign) -> tuple[float, float, float, float]:
    """Box of the letters' caps, centred in the band."""
    _, width = word_layout(sign.word)
    top, bottom = _cap_box()
    y0, y1 = band_span(sign.band)
    cy = (y0 + y1) / 2
    h = bottom - top
    return CANVAS / 2 - width / 2, cy - h / 2, CANVAS / 2 + width / 2, cy + h / 2


def sign_box(sign: Sign) -> tuple[float, float, float, float]:
    """Box the sign covers: the plaque when it has one, else the letters."""
    x0, y0, x1, y1 = text_box(sign)
    if sign.plaque is None:
        return x0, y0, x1, y1
    return x0 - PLAQUE_PAD_X, y0 - PLAQUE_PAD_Y, x1 + PLAQUE_PAD_X, y1 + PLAQUE_PAD_Y


def _draw_sign(img: Image.Image, sign: Sign) -> None:
    if sign.plaque is not None:
        x0, y0, x1, y1 = sign_box(sign)
        s = SUPERSAMPLE
        left, top = math.floor(x0), math.floor(y0)
        w, h = math.ceil(x1) - left, math.ceil(y1) - top
        big = Image.new("L", (w * s, h * s), 0)
        ImageDraw.Draw(big).rounded_rectangle(
            ((x0 - left) * s, (y0 - top) * s, (x1 - left) * s - 1, (y1 - top) * s - 1),
            radius=PLAQUE_RADIUS * s, fill=255)
        img.paste(OBJECT_COLORS[sign.plaque], (left, top, left + w, top + h), big.resize((w, h), Image.Resampling.BOX))
    xs, _ = word_layout(sign.word)
    x0, y0, _, _ = text_box(sign)
    cap_top, _ = _cap_box()
    d = ImageDraw.Draw(img)
    color = OBJECT_COLORS[sign.color]
    # integer origins keep glyph rasterisation identical wherever the word sits
    ox, oy = round(x0 + FONT_STROKE), round(y0 - cap_top)
    for ch, dx in zip(sign.word, xs):
        d.text((ox + round(dx), oy), ch, font=font(), fill=color, stroke_width=FONT_STROKE, stroke_fill=color)


def render(scene: Scene) -> Image.Image:
    """The scene as a 128 × 128 RGB PIL image."""
    img = Image.new("RGB", (CANVAS, CANVAS), BACKGROUND_COLORS[scene.background])
    for o in scene.objects:
        mask, (left, top) = shape_mask(o.shape, o.box)
        img.paste(ALL_COLORS[o.color], (left, top, left + mask.width, top + mask.height), mask)
    if scene.sign is not None:
        _draw_sign(img, scene.sign)
    return img


def render_object_mask(obj: Obj) -> tuple[Image.Image, tuple[int, int]]:
    """The alpha mask of one object where `render` would draw it (used by the judge)."""
    return shape_mask(obj.shape, obj.box)
