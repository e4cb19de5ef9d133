"""The judge: read a picture of the procedural world back into a scene dict (pixels → scene).

    from mmgen.eval import judge, compare
    found = judge(img)                        # {"background", "objects", "sign"} like Scene.to_dict()
    report = compare(scene.to_dict(), found)  # which attributes match; report["exact"]

It grades what the tokenizer and the transformer draw, so it reads by analysis-by-synthesis
against the renderer's own geometry (`render.shape_mask`, the grid lettering of
`mmgen.world.lettering`), and models the usual artefacts — blur, noise, JPEG (sharp luma,
smeared chroma), specks:

1. the background is the palette colour nearest the median of the border; every pixel gets
   its nearest palette colour (a lookup table); where an object colour is the background's
   near twin (white on cream, black on dark blue) the label follows the locally averaged
   coverage instead, so noise cannot flip single pixels;
2. pixels of an object colour other than the background's form connected components; specks
   are dropped; blends of a background-only colour (cream, gray…) are edges or JPEG ringing;
3. a sign's geometry is a function of its band and word length alone (letter cells 8 × 16 px
   on the code grid, centred; the plaque one code larger all round), so every band is read
   under every hypothesis — 2 to 8 letters, bare on the background, or on a plaque where the
   middle of that length's plaque margin is an object colour other than the background's;
   bands whose letter rows hold no ink are skipped;
4. under a hypothesis, each letter cell's ink coverage (pixels projected on the surface → ink
   colour line, in luma, which JPEG keeps sharp) is compared with the 26 glyph masks, sharp and
   blurred (one σ per word), and each cell takes its best letter; the word's colour is the
   object colour that, so drawn, fits best (chroma compared smoothed: JPEG smears it). The
   sign is then drawn again, blurred, and its misfit measured over the band's letter rows
   across the canvas (nothing but the word may be there) and the sign's box. Per band the
   least misfit wins; the sign is the band whose winner leaves the smallest share of its ink's
   energy unexplained, if that share is at most SIGN_MAX_MISFIT (a shape leaves ≥ 0.3 of it);
   every component centred in the sign's box is the sign's, not a shape;
5. every other component is a shape: its coverage is compared with `render.shape_mask` of each
   shape at the side implied by the covered area (sharp and blurred), and the best fit gives
   shape, size, and the cell of its box centre; colours come from the least-mixed pixels.

Coverage ("how much of this pixel is ink of colour A over backdrop B") is measured separately
in luma and chroma (BT.601): JPEG keeps luma sharp and smears chroma, so each part gets its own
blur and weight. Run `python benchmarks/judge.py` for its accuracy, clean and degraded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image
from scipy import ndimage

from mmgen.world.lettering import (CELL_H, CELL_W, CODE_PX, LETTER_ROW, PLAQUE_MARGIN_CODES, glyph_mask,
                                   letter_cells, letters_box, plaque_box)
from mmgen.world.render import shape_mask
from mmgen.world.scene import (ALL_COLORS, BACKGROUND_COLORS, BANDS, CANVAS, CELLS, OBJECT_COLORS, SHAPES,
                               SIZE_JITTER, SIZES, WORD_ALPHABET, WORD_MAX_LEN, WORD_MIN_LEN, cell_at)

# --- tunables (px unless said otherwise) -------------------------------------------------
BORDER = 2                   # the outer ring that decides the background colour
TWIN_DISTANCE = 80.0         # RGB distance below which an object colour is the background's twin
TWIN_SMOOTH = 3              # px: window over which a twin's coverage is averaged before labelling
MIN_BLOB = 12                # components smaller than this are specks (noise, JPEG, stray dots)
MIN_OBJECT_AREA = 50.0       # ink coverage of the smallest shape, a small star of side 18, is ~106
MAX_OBJECT_SIDE = SIZES["large"] + SIZE_JITTER + 4   # a wider component is two shapes touching
PURE_SHARE = 0.8             # colours are read from pixels ≥ this × the 90th-percentile distance from the backdrop
TEMPLATE_BLURS = (0.0, 1.0, 2.0, 3.0)  # σ (px) of the blurred shape templates tried against an object
RIM_GAP = 2                  # px: a component lying mostly this close to a bigger one is its rim
RIM_SHARE = 0.5              # … "mostly" being this share of its pixels
SPLIT_MAX_EROSION = 4        # how far to erode a merged component to pull its shapes apart
SIGN_BLURS = (0.0, 0.7, 1.0)   # σ (px) of the glyph models a sign is read with: sharp, the
                             # benchmark's blur, and softer (JPEG, generator output); one σ per word
CELL_VPAD = 2                # rows above and below a letter cell read with it: its blur spills there
RING_INSET = 2               # px: a plaque's colour is read this far inside its edge and clear of the letters
SIGN_WINDOW_PAD = 4          # rows drawn beyond the plaque when a sign is redrawn: room for its blur
SIGN_REGION_GROW = 1         # px round the sign box a reading must explain too (shapes keep ≥ 2 px off it)
CHROMA_SMEAR = 1.5           # σ (px) both picture and redrawn word are smoothed by before their chroma is compared
LUMA_ONLY_SHARE = 0.5        # letters are read from luma alone where it holds this share of the ink's contrast²
SIGN_GATE_LUMA = 30          # luma levels off the background that count as ink in a band's letter rows: a quarter
                             # of the weakest legible pair's contrast (121), as a 1-px stroke blurred by σ = 1 keeps 0.38
MIN_SIGN_INK_PX = 22         # fewer such pixels and the band holds no sign: half the ink of "II", the faintest word
SIGN_TAKE_SLACK = 2          # px: a component centred this close to the sign's box is the sign's
SIGN_CUT_GROW = 1            # px round the sign's box cut off a shape joined to it (shapes keep ≥ 2 px off it)
BOUND_GAP = 3                # px from a sign's edges beyond which its blurred luma is flat (σ ≤ 1: spill < 1 %)
COLOUR_WINDOW_PAD = 4        # px round the letters where the word's colour is compared: its smoothed chroma spills there
SIGN_MAX_MISFIT = 0.15       # misfit / ink energy above which a band holds no sign: true signs ≤ 0.07 under
                             # blur, noise and JPEG, a band without one ≥ 0.31 (eval scenes 1000–1149, 5000–5299)
MIN_RESIDUAL = 1e-3          # floor on a coverage part's noise-variance estimate (a clean picture's is ~0)

_NAMES = list(ALL_COLORS)                                   # the 14 distinct palette colours
_RGB = np.array([ALL_COLORS[n] for n in _NAMES], dtype=np.float32)
_OBJECT_NAMES = list(OBJECT_COLORS)
_IS_OBJECT_COLOR = np.array([n in OBJECT_COLORS for n in _NAMES])
_BACKGROUND_NAMES = list(BACKGROUND_COLORS)


# --- input -------------------------------------------------------------------------------
def _as_array(image) -> np.ndarray:
    """A PIL image (any mode/size) or an H×W×3 uint8 array → 128 × 128 × 3 uint8."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"judge() needs an H×W×3 uint8 array, got shape {image.shape} dtype {image.dtype}")
        if image.shape[:2] == (CANVAS, CANVAS):
            return image
        image = Image.fromarray(image, "RGB")
    if not isinstance(image, Image.Image):
        raise TypeError(f"judge() needs a PIL image or an H×W×3 uint8 numpy array, got {type(image).__name__}")
    img = image.convert("RGB")
    if img.size != (CANVAS, CANVAS):
        # area-average when shrinking keeps flat fills flat; bilinear when enlarging
        shrink = img.width >= CANVAS and img.height >= CANVAS
        img = img.resize((CANVAS, CANVAS), Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def _nearest(rgb: np.ndarray, names: list[str], exclude: tuple[str, ...] = ()) -> str:
    best = min((n for n in names if n not in exclude),
               key=lambda n: float(((np.asarray(ALL_COLORS[n], np.float32) - rgb) ** 2).sum()))
    return best


LUT_BITS = 6                 # colour lookup precision per channel (error ≤ 1.5 levels at bin centres)


@lru_cache(maxsize=1)
def _label_lut() -> np.ndarray:
    """Nearest palette index for every colour quantised to LUT_BITS per channel (built once, ~0.1 s)."""
    step = 1 << (8 - LUT_BITS)
    q = np.arange(1 << LUT_BITS, dtype=np.float32) * step + (step - 1) / 2
    grid = np.stack(np.meshgrid(q, q, q, indexing="ij"), -1).reshape(-1, 3)
    d = (_RGB ** 2).sum(1)[None, :] - 2.0 * grid @ _RGB.T   # |p − c|² up to |p|², common to all c
    return np.ascontiguousarray(d).argmin(1).astype(np.uint8)


def _label_pixels(img: np.ndarray) -> np.ndarray:
    """Index into _NAMES of each pixel's nearest palette colour (img: uint8 H×W×3)."""
    q = (img >> (8 - LUT_BITS)).astype(np.int32)
    return _label_lut()[(q[..., 0] << (2 * LUT_BITS)) | (q[..., 1] << LUT_BITS) | q[..., 2]]


# Ink coverage is measured in YCbCr (BT.601), luma and chroma apart: JPEG keeps luma sharp
# and halves chroma resolution, so each part is matched against templates with its own blur.
_YCBCR = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32)
CHROMA_WEIGHT = 0.5          # chroma's weight per unit against luma's (JPEG quantises chroma harder)


@lru_cache(maxsize=512)
def _blur_matrix(n: int, sigma: float) -> np.ndarray:
    """n × n Gaussian blur along one axis, zero outside (as gaussian_filter with mode="constant")."""
    radius = int(4 * sigma + 0.5)
    d = np.arange(n)[:, None] - np.arange(n)[None, :]
    k = np.where(np.abs(d) <= radius, np.exp(-0.5 * (d / sigma) ** 2), 0.0)
    return (k / np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2).sum()).astype(np.float32)


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a small 2-D array: two matrix products, much faster than a filter call."""
    if not sigma:
        return a
    return _blur_matrix(a.shape[0], sigma) @ a @ _blur_matrix(a.shape[1], sigma).T


@dataclass
class _Coverage:
    """Coverage α of an ink colour over a backdrop, from luma (y) and from chroma (c).

    Each part is unbiased; its weight is its squared contrast, so a part that barely differs
    between the two colours (and would be mostly noise) counts little.
    """
    y: np.ndarray
    c: np.ndarray
    wy: float
    wc: float

    @property
    def combined(self) -> np.ndarray:
        return (self.wy * self.y + self.wc * self.c) / (self.wy + self.wc)

    def masked(self, keep: np.ndarray) -> "_Coverage":
        return _Coverage(np.where(keep, self.y, 0.0), np.where(keep, self.c, 0.0), self.wy, self.wc)

    def part_errors(self, template: np.ndarray, blurs: tuple[float, ...]) -> tuple[float, float]:
        """Squared errors of luma and chroma against `template`, each at its best-fitting blur."""
        ts = [_blur(template, sg) for sg in blurs]
        return (min(float(((self.y - t) ** 2).sum()) for t in ts),
                min(float(((self.c - t) ** 2).sum()) for t in ts))


def _coverage(arr: np.ndarray, fg: str, bg: str) -> _Coverage:
    """Coverage of colour `fg` over `bg` for every pixel of `arr` (…×3 RGB), not clipped."""
    b = np.asarray(ALL_COLORS[bg], np.float32)
    d = _YCBCR @ (np.asarray(ALL_COLORS[fg], np.float32) - b)
    diff = arr - b
    dy2, dc2 = float(d[0] ** 2), float(d[1:] @ d[1:])
    # luma change / luma contrast; chroma change projected on the chroma contrast
    y = np.einsum("...k,k->...", diff, _YCBCR[0] / d[0]) if dy2 > 1.0 else np.zeros(arr.shape[:-1], np.float32)
    c = (np.einsum("...k,k->...", diff, _YCBCR[1:].T @ d[1:] / dc2) if dc2 > 1.0
         else np.zeros(arr.shape[:-1], np.float32))
    return _Coverage(y, c, dy2 if dy2 > 1.0 else 0.0, CHROMA_WEIGHT * dc2 if dc2 > 1.0 else 0.0)


@lru_cache(maxsize=None)
def _twins(bg: str) -> tuple[str, ...]:
    """Object colours so close to the background that pixel labels mix them up under noise or
    JPEG: white on cream or light blue, black on dark blue."""
    b = np.asarray(ALL_COLORS[bg], np.float32)
    return tuple(n for n in OBJECT_COLORS if n != bg
                 and float(np.linalg.norm(np.asarray(ALL_COLORS[n], np.float32) - b)) < TWIN_DISTANCE)


def _settle_twins(arr: np.ndarray, labels: np.ndarray, bg: str) -> None:
    """Relabel (in place) pixels labelled the background or its twin by the twin's coverage,
    averaged over the TWIN_SMOOTH² neighbours so labelled: one pixel's noise can no longer flip it."""
    bg_idx = _NAMES.index(bg)
    for twin in _twins(bg):
        t_idx = _NAMES.index(twin)
        m = (labels == bg_idx) | (labels == t_idx)
        a = _coverage(arr, twin, bg).combined
        num = ndimage.uniform_filter(np.where(m, a, 0.0), TWIN_SMOOTH, mode="nearest")
        den = ndimage.uniform_filter(m.astype(np.float32), TWIN_SMOOTH, mode="nearest")
        smooth = num / np.maximum(den, 1e-6)
        labels[m] = np.where(smooth[m] >= 0.5, t_idx, bg_idx)


def _pure_color(pix: np.ndarray, backdrop: str) -> str:
    """The object colour of pixels (N × 3) drawn over `backdrop`, read from the least mixed ones.

    Blur and JPEG pull edge pixels towards the backdrop (a small star is nearly all edge), so
    only those furthest from the backdrop vote: the median of the pixels at least PURE_SHARE
    of the 90th-percentile distance.
    """
    dist = np.linalg.norm(pix - np.asarray(ALL_COLORS[backdrop], np.float32), axis=1)
    pure = pix[dist >= PURE_SHARE * np.percentile(dist, 90)]
    return _nearest(np.median(pure, 0), _OBJECT_NAMES, exclude=(backdrop,))


def _ink_mask(labels: np.ndarray, bg: str) -> np.ndarray:
    """Pixels drawn on the background: an object colour other than the background's.

    Pixels nearest a background-only colour (cream, gray, ...) are edge blends or JPEG ringing.
    """
    return _IS_OBJECT_COLOR[labels] & (labels != _NAMES.index(bg))


@dataclass
class _Blobs:
    """Connected components of ink."""
    comp: np.ndarray                 # component id per pixel, 0 = background or speck
    sizes: np.ndarray                # pixels per id
    slices: list                     # bounding box per id (index id − 1), None if dropped


def _blobs(labels: np.ndarray, bg: str) -> _Blobs:
    comp, n = ndimage.label(_ink_mask(labels, bg), structure=np.ones((3, 3)))
    sizes = np.bincount(comp.ravel(), minlength=n + 1)
    comp[sizes[comp] < MIN_BLOB] = 0
    slices = [sl if sizes[k] >= MIN_BLOB else None for k, sl in enumerate(ndimage.find_objects(comp, n), start=1)]
    return _Blobs(comp, sizes, slices)


# --- renderer geometry the judge compares against ----------------------------------------
@lru_cache(maxsize=1)
def _shape_stats() -> dict[str, tuple[float, float]]:
    """(area / side², (centroid y − box centre y) / side) of each shape, measured on the renderer."""
    side, x0, y0 = 200.0, 10.25, 10.75
    stats = {}
    for s in SHAPES:
        m, (left, top) = shape_mask(s, (x0, y0, x0 + side, y0 + side))
        a = np.asarray(m, np.float64) / 255.0
        ys = np.arange(a.shape[0])[:, None] + top + 0.5
        stats[s] = (a.sum() / side ** 2, ((a * ys).sum() / a.sum() - (y0 + side / 2)) / side)
    return stats


# --- the sign ----------------------------------------------------------------------------
# A sign's pixels are compared in YCbCr with chroma scaled by √CHROMA_WEIGHT, so that a squared
# distance there weighs chroma against luma as the shape reader does (JPEG quantises chroma harder).
_SIGN_SPACE = (_YCBCR * np.array([[1.0], [math.sqrt(CHROMA_WEIGHT)], [math.sqrt(CHROMA_WEIGHT)]])).astype(np.float32)
_PLAQUE_MARGIN_PX = PLAQUE_MARGIN_CODES * CODE_PX


def _to_sign_space(rgb: np.ndarray) -> np.ndarray:
    return rgb @ _SIGN_SPACE.T


@lru_cache(maxsize=None)
def _sign_colour(name: str) -> np.ndarray:
    c = _to_sign_space(np.asarray(ALL_COLORS[name], np.float32))
    c.setflags(write=False)
    return c


@dataclass
class _SignPicture:
    """The picture in sign space, sharp and as a drawn sign is compared with it: luma sharp,
    chroma smoothed by CHROMA_SMEAR. JPEG halves chroma resolution, so a thin red stroke comes
    out a duller red-brown, but smoothing keeps the sum of chroma the ink put there; the drawing
    is smoothed alike (`_drawn`)."""
    sharp: np.ndarray
    view: np.ndarray


def _sign_picture(arr: np.ndarray) -> _SignPicture:
    sharp = _to_sign_space(arr)
    view = sharp.copy()
    for k in (1, 2):
        view[..., k] = ndimage.gaussian_filter(sharp[..., k], CHROMA_SMEAR, mode="nearest")
    return _SignPicture(sharp, view)


def _drawn(mask: np.ndarray, sigma: float) -> np.ndarray:
    """How a sharp 0/1 drawing appears in `_SignPicture.view` when the picture is blurred by σ:
    [..., 3] weights on the (luma, chroma, chroma) of the drawn colour's difference."""
    luma = _soften(mask, sigma)
    chroma = _soften(mask, math.hypot(sigma, CHROMA_SMEAR))
    return np.stack([luma, chroma, chroma], -1)


def _soften(a: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur, zero outside."""
    return ndimage.gaussian_filter(a, sigma, mode="constant") if sigma else a


@lru_cache(maxsize=None)
def _letter_templates(sigma: float) -> np.ndarray:
    """Each letter's ink coverage in its cell as drawn, blurred by σ: [26, CELL_H + 2 CELL_VPAD, CELL_W].

    Rows CELL_VPAD … CELL_VPAD + CELL_H − 1 are the cell's; the rows around it get the blur's spill.
    Spill sideways out of the cell is dropped: the neighbouring cells are read on their own.
    """
    m = CELL_VPAD + 2 * CELL_W            # zero margin wide enough for the widest blur tried
    out = np.zeros((len(WORD_ALPHABET), CELL_H + 2 * CELL_VPAD, CELL_W), np.float32)
    for i, ch in enumerate(WORD_ALPHABET):
        canvas = np.zeros((CELL_H + 2 * m, CELL_W + 2 * m), np.float32)
        canvas[m:m + CELL_H, m:m + CELL_W] = glyph_mask(ch)
        out[i] = _soften(canvas, sigma)[m - CELL_VPAD:m + CELL_H + CELL_VPAD, m:m + CELL_W]
    return out


def _glyph_canvas(word: str, band: str, top: int, rows: int) -> np.ndarray:
    """The word's ink as drawn (0/1) on canvas rows top … top + rows − 1."""
    glyphs = np.zeros((rows, CANVAS), np.float32)
    for ch, x, y in letter_cells(word, band):
        glyphs[y - top:y - top + CELL_H, x:x + CELL_W] = glyph_mask(ch)
    return glyphs


@dataclass
class _Reading:
    """One hypothesis about a band's sign, and how well the sign it describes explains the picture."""
    band: str
    word: str
    color: str
    plaque: str | None
    misfit: float        # squared error of the sign drawn again, over the region it makes claims about
    energy: float        # squared contrast of the ink it draws: the misfit of a word "read" off blank surface

    @property
    def misfit_share(self) -> float:
        return self.misfit / max(self.energy, 1e-6)

    @property
    def box(self) -> tuple[int, int, int, int]:
        return (plaque_box if self.plaque is not None else letters_box)(self.word, self.band)

    def as_dict(self) -> dict:
        return {"word": self.word, "color": self.color, "plaque": self.plaque, "band": self.band}


def _read_sign(arr: np.ndarray, bg: str) -> _Reading | None:
    """The scene's sign: the band whose best reading leaves the smallest share of its ink
    unexplained, if that share is at most SIGN_MAX_MISFIT (blank surface leaves all of it, a
    shape most)."""
    pic = _sign_picture(arr)
    best = None
    for band in BANDS:
        if not _may_hold_sign(pic, bg, band):
            continue
        r = _read_band(arr, pic, bg, band)
        if r.misfit_share <= SIGN_MAX_MISFIT and (best is None or r.misfit_share < best.misfit_share):
            best = r
    return best


def _may_hold_sign(pic: _SignPicture, bg: str, band: str) -> bool:
    """Whether the band's letter rows hold anything but background: a sign puts letters or a
    plaque there, and ink and surface differ by ≥ 120 levels of luma, so one of them differs
    from the background by ≥ 60."""
    ly = LETTER_ROW[band] * CODE_PX
    off = np.abs(pic.view[ly:ly + CELL_H, :, 0] - _sign_colour(bg)[0]) >= SIGN_GATE_LUMA
    return int(off.sum()) >= MIN_SIGN_INK_PX


def _read_band(arr: np.ndarray, pic: _SignPicture, bg: str, band: str) -> _Reading:
    """The best reading of one band: of every word length, bare or on a plaque (where that
    length's plaque margin is an object colour), the one whose redrawing fits the picture best."""
    hypotheses = []
    for n in range(WORD_MIN_LEN, WORD_MAX_LEN + 1):
        hypotheses.append((n, None))
        plaque = _plaque_colour(arr, bg, band, n)
        if plaque is not None:
            hypotheses.append((n, plaque))
    # cheapest first: a hypothesis whose misfit cannot beat the best so far is not read
    bounds = [_misfit_bound(pic, bg, band, n, plaque) for n, plaque in hypotheses]
    best = None
    for k in np.argsort(bounds, kind="stable"):
        if best is not None and bounds[k] >= best.misfit:
            break
        r = _read_hypothesis(pic, bg, band, *hypotheses[k])
        if best is None or r.misfit < best.misfit:
            best = r
    return best


def _misfit_bound(pic: _SignPicture, bg: str, band: str, n: int, plaque: str | None) -> float:
    """A lower bound on the misfit of any n-letter reading (on `plaque`) of the band: the luma
    misfit over the letter rows BOUND_GAP px or more from every edge of the sign, where the
    drawing is flat whatever the letters: background outside the sign, plaque in its margin
    (up to the blur's spill that far out, < 1 %)."""
    ly = LETTER_ROW[band] * CODE_PX
    luma = pic.view[ly:ly + CELL_H, :, 0]
    lx0, _, lx1, _ = letters_box("A" * n, band)
    g = BOUND_GAP
    flat = np.zeros(CANVAS, bool)                 # columns where the drawing is the background
    flat[:lx0 - g] = flat[lx1 + g:] = True
    bound = 0.0
    if plaque is not None:
        px0, _, px1, _ = plaque_box("A" * n, band)
        flat[px0 - g:px1 + g] = False
        margin = np.zeros(CANVAS, bool)
        margin[px0 + g:lx0 - g] = margin[lx1 + g:px1 - g] = True
        bound += float(((luma[:, margin] - _sign_colour(plaque)[0]) ** 2).sum())
    return bound + float(((luma[:, flat] - _sign_colour(bg)[0]) ** 2).sum())


def _plaque_colour(arr: np.ndarray, bg: str, band: str, n: int) -> str | None:
    """The colour of an n-letter word's plaque in `band`, read from the middle of its margin
    (RING_INSET px clear of its edge and of the letters); None if that is no object colour
    other than the background's."""
    px0, py0, px1, py1 = plaque_box("A" * n, band)
    lx0, ly0, lx1, ly1 = letters_box("A" * n, band)
    i = RING_INSET
    ring = np.zeros((py1 - py0, px1 - px0), bool)
    ring[i:-i, i:-i] = True
    ring[ly0 - py0 - i:ly1 - py0 + i, lx0 - px0 - i:lx1 - px0 + i] = False
    nearest = _nearest(np.median(arr[py0:py1, px0:px1][ring], 0), _NAMES)
    if nearest == bg or nearest not in OBJECT_COLORS:
        return None
    return nearest


def _read_hypothesis(pic: _SignPicture, bg: str, band: str, n: int, plaque: str | None) -> _Reading:
    """Read an n-letter word in `band` on `plaque` (None: bare on the background)."""
    surface = plaque or bg
    x0, y0, x1, y1 = letters_box("A" * n, band)
    guess = _ink_colour(pic.sharp[y0:y1, x0:x1].reshape(-1, 3), surface)
    word, sigma = _read_letters(_ink_coverage(pic, band, n, surface, guess), n)
    color = _word_colour(pic, band, word, surface, sigma)
    if color != guess:   # read again along the right colour line
        word, sigma = _read_letters(_ink_coverage(pic, band, n, surface, color), n)
    misfit, energy = _sign_misfit(pic, bg, band, word, color, plaque, sigma)
    return _Reading(band, word, color, plaque, misfit, energy)


def _ink_colour(pixels: np.ndarray, surface: str) -> str:
    """A first guess at the colour of letters on `surface`, from their cells' pixels (N × 3, sign
    space), before their glyphs are known.

    Blur mixes ink with surface (an inner stroke is one pixel wide), so no pixel need be the
    pure ink; but every mix lies on the line from the surface to the ink. Each candidate ink is
    scored by the squared distance of the pixels from its segment (coverage clipped to [0, 1]),
    and the closest segment wins.
    """
    s = _sign_colour(surface)
    inks = [n for n in _OBJECT_NAMES if n != surface]
    d = np.stack([_sign_colour(n) for n in inks]) - s                     # [inks, 3]
    rel = pixels - s                                                       # [N, 3]
    proj = rel @ d.T                                                       # [N, inks]
    a = np.clip(proj / (d * d).sum(1), 0.0, 1.0)
    err = (rel ** 2).sum(1)[:, None] - 2 * a * proj + a ** 2 * (d * d).sum(1)
    return inks[int(err.sum(0).argmin())]


def _ink_coverage(pic: _SignPicture, band: str, n: int, surface: str, color: str) -> np.ndarray:
    """Ink coverage of an n-letter word's cells and CELL_VPAD rows round them: each pixel
    projected on the line from the surface colour to the ink colour, in luma alone where the
    two differ enough in luma (JPEG keeps luma sharp but smears chroma; every legible pair has
    ≥ 120 levels of luma contrast)."""
    x0, y0, x1, y1 = letters_box("A" * n, band)
    s = _sign_colour(surface)
    d = _sign_colour(color) - s
    if d[0] ** 2 >= LUMA_ONLY_SHARE * float(d @ d):
        d = d * np.array([1.0, 0.0, 0.0], np.float32)
    return (pic.sharp[y0 - CELL_VPAD:y1 + CELL_VPAD, x0:x1] - s) @ (d / float(d @ d))


def _read_letters(alpha: np.ndarray, n: int) -> tuple[str, float]:
    """The word whose glyphs best match the ink coverage of its n cells ([CELL_H + 2 CELL_VPAD,
    n CELL_W]), each cell on its own, at the blur (one for the word) that fits best; and that blur."""
    flat = alpha.reshape(alpha.shape[0], n, CELL_W).transpose(1, 0, 2).reshape(n, -1)   # [n, rows × CELL_W]
    best = None
    for sigma in SIGN_BLURS:
        t = _letter_templates(sigma).reshape(len(WORD_ALPHABET), -1)
        # |cell − T|² = |cell|² − 2 cell·T + |T|²; einsum, not BLAS (threaded BLAS stalls on a busy machine)
        err = (flat ** 2).sum(1)[:, None] - 2 * np.einsum("np,kp->nk", flat, t) + (t ** 2).sum(1)   # [n, 26]
        total = float(err.min(1).sum())
        if best is None or total < best[0]:
            best = (total, err.argmin(1), sigma)
    return "".join(WORD_ALPHABET[i] for i in best[1]), best[2]


def _word_colour(pic: _SignPicture, band: str, word: str, surface: str, sigma: float) -> str:
    """The object colour that, drawn as `word` (blurred by σ) on `surface`, fits the picture's
    view best. The squared error is quadratic in the ink colour, so each candidate costs a dot
    product."""
    x0, y0, x1, y1 = letters_box(word, band)
    m = COLOUR_WINDOW_PAD
    drawn = _drawn(_glyph_canvas(word, band, y0 - m, y1 - y0 + 2 * m)[:, x0 - m:x1 + m], sigma)
    rel = pic.view[y0 - m:y1 + m, x0 - m:x1 + m] - _sign_colour(surface)     # the picture minus the surface
    # Σ |rel − drawn ⊙ d|² = const − 2 d·B + d²·A for a candidate ink d (minus the surface)
    B = (drawn * rel).sum((0, 1))
    A = (drawn ** 2).sum((0, 1))
    inks = [n for n in _OBJECT_NAMES if n != surface]
    d = np.stack([_sign_colour(n) for n in inks]) - _sign_colour(surface)
    return inks[int(((d ** 2) @ A - 2 * d @ B).argmin())]


def _sign_misfit(pic: _SignPicture, bg: str, band: str, word: str, color: str, plaque: str | None,
                 sigma: float) -> tuple[float, float]:
    """(misfit, energy) of a sign drawn as the renderer does and blurred by σ, against the picture.

    The misfit is the squared error over the band's letter rows across the whole canvas (no shape
    reaches them when a sign is there: what is not the word must be plain surface or background)
    and over the sign's box grown by SIGN_REGION_GROW. The energy is that of the redrawn word's
    ink against its surface: the misfit a "word" read off blank surface would leave.
    """
    ly = LETTER_ROW[band] * CODE_PX
    top = ly - _PLAQUE_MARGIN_PX - SIGN_WINDOW_PAD            # rows drawn: the plaque's, and the blur's spill
    rows = CELL_H + 2 * (_PLAQUE_MARGIN_PX + SIGN_WINDOW_PAD)
    b, s, c = _sign_colour(bg), _sign_colour(plaque or bg), _sign_colour(color)
    # the sign minus the background: zero outside the sign, so the blur's zero padding is exact
    ink = _drawn(_glyph_canvas(word, band, top, rows), sigma)
    model = ink * (c - s)
    bx0, by0, bx1, by1 = (plaque_box if plaque is not None else letters_box)(word, band)
    if plaque is not None:
        plate = np.zeros((rows, CANVAS), np.float32)
        plate[by0 - top:by1 - top, bx0:bx1] = 1.0
        model += _drawn(plate, sigma) * (s - b)
    region = np.zeros((rows, CANVAS), bool)
    region[ly - top:ly - top + CELL_H] = True
    g = SIGN_REGION_GROW
    region[by0 - g - top:by1 + g - top, bx0 - g:bx1 + g] = True
    diff = pic.view[top:top + rows][region] - b - model[region]
    return float((diff ** 2).sum()), float((ink ** 2).sum((0, 1)) @ (c - s) ** 2)


# --- shapes ------------------------------------------------------------------------------
def _split_merged(mask: np.ndarray, labels: np.ndarray) -> list[np.ndarray]:
    """Pull apart shapes whose anti-aliased gap got filled (blur, JPEG).

    Seeds are the big single-colour pieces of the component (two shapes of different colours;
    eroded once so that thin halos never seed), else what survives erosion (two shapes of one
    colour joined by a thin neck); every pixel then joins its nearest seed.
    """
    seeds = np.zeros(mask.shape, np.int32)
    n_seeds = 0
    counts = np.bincount(labels[mask], minlength=len(_NAMES))
    for c in np.flatnonzero(counts >= MIN_OBJECT_AREA):
        lab, n = ndimage.label(ndimage.binary_erosion(mask & (labels == c)), structure=np.ones((3, 3)))
        sizes = np.bincount(lab.ravel(), minlength=n + 1)
        for i in range(1, n + 1):
            if sizes[i] >= MIN_OBJECT_AREA / 2:
                n_seeds += 1
                seeds[lab == i] = n_seeds
    if n_seeds < 2:
        for it in range(1, SPLIT_MAX_EROSION + 1):
            lab, n = ndimage.label(ndimage.binary_erosion(mask, iterations=it), structure=np.ones((3, 3)))
            sizes = np.bincount(lab.ravel(), minlength=n + 1)
            big = [i for i in range(1, n + 1) if sizes[i] >= MIN_BLOB]
            if len(big) >= 2:
                seeds[:] = 0
                for j, i in enumerate(big, start=1):
                    seeds[lab == i] = j
                n_seeds = len(big)
                break
    if n_seeds < 2:
        return [mask]
    _, (iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    owner = seeds[iy, ix]
    return [mask & (owner == j) for j in range(1, n_seeds + 1)]


def _paste(dst: np.ndarray, src: np.ndarray, top: int, left: int) -> None:
    """dst[top:, left:] = src, clipped to dst."""
    sy0, sx0 = max(0, -top), max(0, -left)
    dy0, dx0 = max(0, top), max(0, left)
    hh = min(src.shape[0] - sy0, dst.shape[0] - dy0)
    ww = min(src.shape[1] - sx0, dst.shape[1] - dx0)
    if hh > 0 and ww > 0:
        dst[dy0:dy0 + hh, dx0:dx0 + ww] = src[sy0:sy0 + hh, sx0:sx0 + ww]


def _read_shape(arr: np.ndarray, labels: np.ndarray, comp: np.ndarray, k: int, bg: str) -> dict | None:
    """Component k as an object dict (plus "_area", its coverage), or None if it is a speck."""
    ys, xs = np.nonzero(comp == k)
    y0, y1 = max(0, ys.min() - 4), min(CANVAS, ys.max() + 5)
    x0, x1 = max(0, xs.min() - 4), min(CANVAS, xs.max() + 5)
    win = (slice(y0, y1), slice(x0, x1))
    own = comp[win] == k
    # the component and its surroundings, not its neighbours' pixels
    near = ndimage.binary_dilation(own, iterations=2) & ((comp[win] == 0) | own)
    color = _pure_color(arr[win][own], bg)
    cov = _coverage(arr[win], color, bg).masked(near)
    # shapes are solid: a stray speck inside one (a hole in the component, or another colour
    # away from its edges) is taken as covered
    filled = ndimage.binary_fill_holes(own)
    interior = ndimage.binary_erosion(filled, iterations=2)
    holes = (filled & ~own) | (interior & (labels[win] != _NAMES.index(color)))
    if holes.any():
        cov.y[holes], cov.c[holes] = 1.0, 1.0
    alpha = cov.combined
    area = float(alpha.sum())
    if area < MIN_OBJECT_AREA:
        return None
    gy, gx = np.mgrid[y0:y1, x0:x1]
    cx = float((alpha * (gx + 0.5)).sum() / area)
    cy = float((alpha * (gy + 0.5)).sum() / area)
    boxes, errs = [], []
    for shape, (fill, dy) in _shape_stats().items():
        # the box this shape would need to cover `area` around the measured centroid
        side = math.sqrt(area / fill)
        bcy = cy - dy * side
        m, (left, top) = shape_mask(shape, (cx - side / 2, bcy - side / 2, cx + side / 2, bcy + side / 2))
        t = np.zeros_like(alpha)
        _paste(t, np.asarray(m, np.float32) / 255.0, top - y0, left - x0)
        boxes.append((shape, side, bcy))
        errs.append(cov.part_errors(t, TEMPLATE_BLURS))
    errs = np.array(errs)                                       # (shapes, [luma, chroma])
    # weigh each part by 1 / its mean square in the ring just outside the component, where
    # the true coverage is ~0: noise, and smear (JPEG's chroma, which can hardly tell a small
    # star from a circle, spills far over the edge) make a part count less
    ring = near & ~own
    var = [float(np.mean(p[ring] ** 2)) if ring.any() else 0.0 for p in (cov.y, cov.c)]
    weights = np.where(np.array([cov.wy, cov.wc]) > 0, 1.0 / np.maximum(var, MIN_RESIDUAL), 0.0)
    shape, side, by = boxes[int(np.argmin(errs @ weights))]
    size = min(SIZES, key=lambda n: abs(SIZES[n] - side))
    return {"shape": shape, "color": color, "size": size, "cell": cell_at(cx, by), "_area": area}


# --- the judge ---------------------------------------------------------------------------
def judge(image) -> dict:
    """Read a picture into `{"background", "objects", "sign"}`, the format of `Scene.to_dict()`.

    `image`: a PIL image of any mode and size (converted to RGB, resized to 128 × 128) or an
    H×W×3 uint8 array. Objects come in CELLS order (row-major); a cell may list two if two
    blobs sit in it (compare() counts the second as extra). Deterministic.
    """
    pixels = _as_array(image)
    arr = pixels.astype(np.float32)
    ring = np.concatenate([arr[:BORDER].reshape(-1, 3), arr[-BORDER:].reshape(-1, 3),
                           arr[:, :BORDER].reshape(-1, 3), arr[:, -BORDER:].reshape(-1, 3)])
    bg = _nearest(np.median(ring, 0), _BACKGROUND_NAMES)
    labels = _label_pixels(pixels)
    _settle_twins(arr, labels, bg)
    blobs = _blobs(labels, bg)

    sign = None
    taken = np.zeros(len(blobs.slices) + 1, bool)     # component ids that are the sign's
    reading = _read_sign(arr, bg)
    if reading is not None:
        sign = reading.as_dict()
        _take_sign(blobs, reading.box, taken)

    _absorb_rims(blobs, taken)
    objects = _read_objects(arr, labels, blobs, taken, bg)
    objects.sort(key=lambda o: (CELLS.index(o["cell"]), -o.pop("_area")))
    return {"background": bg, "objects": objects, "sign": sign}


def _take_sign(blobs: _Blobs, box: tuple[int, int, int, int], taken: np.ndarray) -> None:
    """Everything inside the sign's box is the sign's, not a shape (in place).

    Components centred in the box (± SIGN_TAKE_SLACK) are taken whole: plaque, letters, their
    fringes and specks. A component that only reaches into it is a shape that blur or JPEG has
    joined to the plaque across their ≥ 2 px gap: it loses its pixels in the box grown by
    SIGN_CUT_GROW (the plaque's blurred edge), and keeps the rest.
    """
    x0, y0, x1, y1 = box
    t = SIGN_TAKE_SLACK
    for k, sl in enumerate(blobs.slices, start=1):
        if sl is not None and x0 - t <= (sl[1].start + sl[1].stop) / 2 <= x1 + t \
                and y0 - t <= (sl[0].start + sl[0].stop) / 2 <= y1 + t:
            taken[k] = True
    g = SIGN_CUT_GROW
    win = (slice(max(0, y0 - g), y1 + g), slice(max(0, x0 - g), x1 + g))
    inside = blobs.comp[win]
    for k in np.unique(inside):
        if k == 0 or taken[k]:
            continue
        inside[inside == k] = 0
        ys, xs = np.nonzero(blobs.comp == k)
        blobs.sizes[k] = len(ys)
        if len(ys) < MIN_BLOB:
            blobs.comp[blobs.comp == k] = 0
            blobs.slices[k - 1] = None
        else:
            blobs.slices[k - 1] = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))


def _absorb_rims(blobs: _Blobs, taken: np.ndarray) -> None:
    """Edge blends split off a shape (the dark rim of a light shape on black, cut off from it by
    mid-tones nearest a background-only colour) join the bigger shape they hug (in place)."""
    comp, sizes, slices = blobs.comp, blobs.sizes, blobs.slices
    for k in sorted(range(1, len(slices) + 1), key=lambda k: sizes[k]):
        sl = slices[k - 1]
        if sl is None or taken[k]:
            continue
        win = tuple(slice(max(0, a.start - RIM_GAP - 1), a.stop + RIM_GAP + 1) for a in sl)
        cw = comp[win]
        own = cw == k
        others = (cw != 0) & ~own & (sizes[cw] > sizes[k]) & ~taken[cw]
        if not others.any():
            continue
        if (ndimage.binary_dilation(others, iterations=RIM_GAP) & own).sum() < RIM_SHARE * own.sum():
            continue
        hosts = cw[ndimage.binary_dilation(own, iterations=RIM_GAP) & others]
        host = int(np.bincount(hosts).argmax())
        comp[comp == k] = host
        sizes[host] += sizes[k]
        slices[k - 1] = None
        h = slices[host - 1]
        slices[host - 1] = tuple(slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(h, sl))


def _read_objects(arr: np.ndarray, labels: np.ndarray, blobs: _Blobs, taken: np.ndarray, bg: str) -> list[dict]:
    """Every component not the sign's, read as a shape (too-big ones split first)."""
    comp = blobs.comp
    next_id = len(blobs.slices) + 1
    objects = []
    for k, sl in enumerate(blobs.slices, start=1):
        if sl is None or taken[k]:
            continue
        ids = [k]
        if max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start) > MAX_OBJECT_SIDE:
            parts = _split_merged(comp == k, labels)
            if len(parts) > 1:
                ids = []
                for part in parts:
                    comp[part] = next_id
                    ids.append(next_id)
                    next_id += 1
        for i in ids:
            o = _read_shape(arr, labels, comp, i, bg)
            if o is not None:
                objects.append(o)
    return objects


# --- grading -----------------------------------------------------------------------------
OBJECT_ATTRS = ("shape", "color", "size")
SIGN_ATTRS = ("word", "color", "plaque", "band")


def compare(expected: dict, found: dict) -> dict:
    """Which attributes of `found` (e.g. judge's reading) match `expected` (a scene dict).

    Objects are matched by cell (a cell holds at most one object; if `found` lists two in one
    cell, the first is matched and the rest count as extra). Returns::

        {"exact": bool,            # background, every object attribute and every sign attribute
                                   # right, no missing/extra object, no unexpected sign
         "background": bool,
         "objects": [{"cell": str, "found": bool, "shape": bool, "color": bool, "size": bool}, ...],
                                   # one per expected object, in expected order; attributes of a
                                   # missing object are False
         "extra_objects": int,     # found objects in cells where none was expected
         "sign": None | {"present": bool, "word": bool, "color": bool, "plaque": bool, "band": bool},
                                   # None when no sign was expected
         "extra_sign": bool}       # a sign was found where none was expected
    """
    for name, d in (("expected", expected), ("found", found)):
        if not isinstance(d, dict) or "objects" not in d:
            raise TypeError(f"compare(): {name} must be a scene dict with 'objects', got {type(d).__name__}")
    by_cell: dict[str, dict] = {}
    extra = 0
    for o in found.get("objects", []):
        if o["cell"] in by_cell:
            extra += 1
        else:
            by_cell[o["cell"]] = o
    expected_cells = {o["cell"] for o in expected["objects"]}
    extra += sum(1 for c in by_cell if c not in expected_cells)
    objects = []
    for o in expected["objects"]:
        f = by_cell.get(o["cell"])
        objects.append({"cell": o["cell"], "found": f is not None,
                        **{a: f is not None and f.get(a) == o[a] for a in OBJECT_ATTRS}})
    es, fs = expected.get("sign"), found.get("sign")
    sign = None
    if es is not None:
        sign = {"present": fs is not None, **{a: fs is not None and fs.get(a) == es[a] for a in SIGN_ATTRS}}
    report = {
        "background": expected.get("background") == found.get("background"),
        "objects": objects,
        "extra_objects": extra,
        "sign": sign,
        "extra_sign": es is None and fs is not None,
    }
    report["exact"] = bool(report["background"] and extra == 0 and not report["extra_sign"]
                           and all(all(o[a] for a in ("found",) + OBJECT_ATTRS) for o in objects)
                           and (sign is None or all(sign.values())))
    return {"exact": report.pop("exact"), **report}


def summarize(reports: list[dict]) -> dict[str, float]:
    """Accuracies over many `compare` reports (fractions in [0, 1]).

    exact / background / extra_objects / extra_sign are per scene (the last two: share of scenes
    with any); object attributes are per expected object (a missing object is wrong in all);
    sign attributes are per scene that has a sign.
    """
    objs = [o for r in reports for o in r["objects"]]
    signs = [r["sign"] for r in reports if r["sign"] is not None]
    mean = lambda xs: float(np.mean(xs)) if len(xs) else float("nan")   # noqa: E731
    out = {"exact": mean([r["exact"] for r in reports]),
           "background": mean([r["background"] for r in reports])}
    for a in ("found",) + OBJECT_ATTRS:
        out[f"object_{a}"] = mean([o[a] for o in objs])
    out["extra_objects"] = mean([r["extra_objects"] > 0 for r in reports])
    for a in ("present",) + SIGN_ATTRS:
        out[f"sign_{a}"] = mean([s[a] for s in signs])
    out["extra_sign"] = mean([r["extra_sign"] for r in reports])
    return out
