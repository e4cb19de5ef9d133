"""Render a `Scene` to a 128 × 128 RGB picture: exact palette, anti-aliased edges, deterministic.

Shapes are drawn as masks at `SUPERSAMPLE`× in a small patch around each object, box-filtered
down to an alpha mask and composited in their flat colour — so edges are anti-aliased and the
same scene always gives the same bytes. Words are lettered on the tokenizer's code grid
(`lettering.py`): a monospace bitmap face, one 8 × 16 cell per letter, on a square plaque whose
edges lie on the grid too.
"""
from __future__ import annotations

import math
import numpy as np
from PIL import Image, ImageDraw

from .lettering import draw_word, letters_box, plaque_box
from .scene import ALL_COLORS, BACKGROUND_COLORS, CANVAS, OBJECT_COLORS, Scene, Sign

SUPERSAMPLE = 4
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


def text_box(sign: Sign) -> tuple[float, float, float, float]:
    """Box of the sign's letter cells (on the code grid)."""
    return tuple(float(v) for v in letters_box(sign.word, sign.band))


def sign_box(sign: Sign) -> tuple[float, float, float, float]:
    """Box the sign covers: the plaque when it has one, else the letter cells."""
    box = letters_box(sign.word, sign.band) if sign.plaque is None else plaque_box(sign.word, sign.band)
    return tuple(float(v) for v in box)


def render(scene: Scene) -> Image.Image:
    """The scene as a 128 × 128 RGB PIL image."""
    img = Image.new("RGB", (CANVAS, CANVAS), BACKGROUND_COLORS[scene.background])
    for o in scene.objects:
        mask, (left, top) = shape_mask(o.shape, o.box)
        img.paste(ALL_COLORS[o.color], (left, top, left + mask.width, top + mask.height), mask)
    if scene.sign is not None:
        s = scene.sign
        pixels = np.array(img)
        draw_word(pixels, s.word, s.band, OBJECT_COLORS[s.color], None if s.plaque is None else OBJECT_COLORS[s.plaque])
        img = Image.fromarray(pixels)
    return img
