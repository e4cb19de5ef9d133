"""The scene model of the procedural world (docs/WORLD.md): every constant named once.

A `Scene` is a background, up to four flat shapes placed in the cells of a 3 × 3 grid, and at
most one sign (a word centred in a horizontal band). It holds the exact pixel geometry too
(sub-cell offsets and jittered sizes) so that a render is fully determined by the scene and an
edit can change one attribute while every other pixel stays put.

    from mmgen.world import sample_scene, render
    scene = sample_scene(seed=3)
    scene.to_dict()   # {"background": ..., "objects": [...], "sign": ...}
    render(scene)     # PIL.Image 128 × 128 RGB
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

# --- canvas ----------------------------------------------------------------------------------
CANVAS = 128                     # pixels per side
GRID = 3                         # the canvas is cut into thirds each way
CELL_PX = CANVAS / GRID          # 42.67 px per cell
CANVAS_MARGIN = 1.0              # an object's box keeps this far from the canvas edge
MIN_GAP = 2.0                    # two objects' boxes are at least this far apart (on some axis)

# --- colours (sRGB) --------------------------------------------------------------------------
OBJECT_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 38, 38),
    "orange": (249, 115, 22),
    "yellow": (250, 204, 21),
    "green": (22, 163, 74),
    "blue": (37, 99, 235),
    "purple": (147, 51, 234),
    "pink": (236, 72, 153),
    "brown": (120, 72, 32),
    "black": (23, 23, 23),
    "white": (250, 250, 250),
}
BACKGROUND_COLORS: dict[str, tuple[int, int, int]] = {
    "white": (250, 250, 250),
    "black": (23, 23, 23),
    "gray": (156, 163, 175),
    "cream": (254, 243, 199),
    "light blue": (186, 230, 253),
    "dark blue": (30, 41, 89),
}
DEFAULT_BACKGROUND = "white"
# every named colour with its RGB (black and white are shared by both lists)
ALL_COLORS: dict[str, tuple[int, int, int]] = {**OBJECT_COLORS, **BACKGROUND_COLORS}

# --- shapes and sizes ------------------------------------------------------------------------
SHAPES = ("circle", "square", "triangle", "star", "diamond", "cross")
SIZES: dict[str, int] = {"small": 20, "medium": 30, "large": 42}   # side of the bounding box, px
DEFAULT_SIZE = "medium"
SIZE_JITTER = 2                  # ± px on the side
POSITION_JITTER = 3              # ± px on each axis: the centre stays within 6 px of the cell centre
MAX_OBJECTS = 4

# --- cells (row-major, top row first) -------------------------------------------------------
CELLS = ("top left", "top", "top right",
         "left", "center", "right",
         "bottom left", "bottom", "bottom right")


def cell_row_col(cell: str) -> tuple[int, int]:
    i = CELLS.index(cell)
    return i // GRID, i % GRID


def cell_center(cell: str) -> tuple[float, float]:
    """(x, y) of a cell's centre in pixels."""
    row, col = cell_row_col(cell)
    return (col + 0.5) * CELL_PX, (row + 0.5) * CELL_PX


def cell_at(x: float, y: float) -> str:
    """The cell a point falls in (points on the canvas edge belong to the edge cells)."""
    col = min(GRID - 1, max(0, int(x // CELL_PX)))
    row = min(GRID - 1, max(0, int(y // CELL_PX)))
    return CELLS[row * GRID + col]


# --- signs -----------------------------------------------------------------------------------
BANDS = ("top", "middle", "bottom")          # the sign's band is a full-width third
WORD_MIN_LEN, WORD_MAX_LEN = 2, 8
WORD_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Words a sign often carries; random letter strings are used as well so any word is drawable.
COMMON_WORDS = (
    "OPEN", "SHOP", "STOP", "EXIT", "SALE", "CAFE", "HELLO", "HI", "YES", "NO", "GO", "UP",
    "BAR", "INN", "HOTEL", "PARK", "BOOKS", "TAXI", "BUS", "PIZZA", "BREAD", "FISH", "BAKERY",
    "MILK", "TEA", "JAZZ", "ZOO", "LOVE", "HOME", "FOOD", "ART", "WOW", "FUN", "SUN", "MOON",
    "STAR", "CAKE", "TOYS", "GIFT", "PLAY", "WIN", "DOG", "CAT", "BIKE", "CITY", "MAP",
    "KEEP", "PULL", "PUSH", "IN", "OUT", "FREE", "NEW", "HOT", "COLD", "ICE", "WAVE", "ZORB",
    "QUIZ", "LUCK", "HAPPY", "MUSIC", "DANCE", "GAMES", "CLOSED", "BEACH", "GARDEN",
    "WELCOME", "BIRTHDAY", "THANKS", "SUMMER", "WINTER", "MARKET", "COFFEE", "RECYCLE",
)
# The word/surface colour pairs a sign may have (the surface is the plaque, or the background of a
# bare word): high-contrast pairs only, so every glyph patch is a two-colour patch the tokenizer keeps
# exactly (docs/WORLD.md). A request for another pair gets the nearest legible one (`legible_pair`).
LEGIBLE_PAIRS: tuple[tuple[str, str], ...] = (
    ("black", "white"), ("red", "white"), ("blue", "white"),
    ("white", "black"), ("yellow", "black"),
    ("white", "red"), ("white", "blue"), ("white", "green"), ("white", "purple"),
    ("black", "yellow"), ("black", "orange"),
    ("black", "cream"), ("white", "dark blue"), ("black", "light blue"), ("black", "gray"),
)
PLAQUE_PROBABILITY = 0.6         # a sign sits on a rounded plaque this often


def is_legible(color: str, surface: str) -> bool:
    return (color, surface) in LEGIBLE_PAIRS


def _rgb_distance(a: str, b: str) -> float:
    return sum((x - y) ** 2 for x, y in zip(ALL_COLORS[a], ALL_COLORS[b])) ** 0.5


def legible_pair(color: str | None, surface: str, plaque_ok: bool = True, background: str | None = None
                 ) -> tuple[str, str]:
    """The legible (word colour, surface colour) pair nearest to what was asked.

    `surface` is the plaque's colour, or the background's for a bare word. With `plaque_ok` the
    surface may change (to another plaque colour, never the `background`); without, only the word's
    colour may. `color` None means any colour. Distance: the surface's RGB distance first, then the word's."""
    def cost(pair):
        c, s = pair
        return (_rgb_distance(s, surface), 0.0 if color is None else _rgb_distance(c, color))
    pairs = [p for p in LEGIBLE_PAIRS if p[1] == surface]
    if plaque_ok and (not pairs or (color is not None and not is_legible(color, surface))):
        pairs += [p for p in LEGIBLE_PAIRS if p[1] in OBJECT_COLORS and p[1] != background and p[1] != surface]
    if not pairs:
        raise InvalidScene(f"no legible word colour on {surface}")
    return min(pairs, key=cost)


def band_rows(band: str) -> int:
    return BANDS.index(band)


def band_span(band: str) -> tuple[float, float]:
    """(top, bottom) y of a band in pixels."""
    i = band_rows(band)
    return i * CELL_PX, (i + 1) * CELL_PX


@dataclass(frozen=True)
class Obj:
    """One flat shape. `offset`/`side` are the exact geometry; `size`/`cell` are what words name."""
    shape: str
    color: str
    size: str = DEFAULT_SIZE
    cell: str = "center"
    offset: tuple[float, float] = (0.0, 0.0)   # px from the cell centre to the box centre
    side: float | None = None                   # px; None = the nominal side of `size`

    @property
    def side_px(self) -> float:
        return float(SIZES[self.size]) if self.side is None else float(self.side)

    @property
    def center(self) -> tuple[float, float]:
        cx, cy = cell_center(self.cell)
        return cx + self.offset[0], cy + self.offset[1]

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) bounding box in pixels."""
        cx, cy = self.center
        h = self.side_px / 2
        return cx - h, cy - h, cx + h, cy + h

    def to_dict(self) -> dict:
        return {"shape": self.shape, "color": self.color, "size": self.size, "cell": self.cell}


@dataclass(frozen=True)
class Sign:
    word: str
    color: str
    plaque: str | None = None
    band: str = "middle"

    def to_dict(self) -> dict:
        return {"word": self.word, "color": self.color, "plaque": self.plaque, "band": self.band}


@dataclass(frozen=True)
class Scene:
    background: str = DEFAULT_BACKGROUND
    objects: tuple[Obj, ...] = field(default_factory=tuple)
    sign: Sign | None = None

    def to_dict(self) -> dict:
        return {
            "background": self.background,
            "objects": [o.to_dict() for o in self.objects],
            "sign": None if self.sign is None else self.sign.to_dict(),
        }

    def to_json_dict(self) -> dict:
        """Like `to_dict` plus the exact geometry, so `Scene.from_dict` rebuilds the same pixels."""
        d = self.to_dict()
        for od, o in zip(d["objects"], self.objects):
            od["offset"] = [round(o.offset[0], 3), round(o.offset[1], 3)]
            od["side"] = o.side_px
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Scene":
        objs = tuple(
            Obj(shape=o["shape"], color=o["color"], size=o.get("size", DEFAULT_SIZE),
                cell=o["cell"], offset=tuple(o.get("offset", (0.0, 0.0))), side=o.get("side"))
            for o in d.get("objects", []))
        s = d.get("sign")
        sign = None if s is None else Sign(word=s["word"], color=s["color"],
                                           plaque=s.get("plaque"), band=s.get("band", "middle"))
        return cls(background=d.get("background", DEFAULT_BACKGROUND), objects=objs, sign=sign)

    def with_objects(self, objects) -> "Scene":
        return replace(self, objects=tuple(objects))

    def object_in(self, cell: str) -> Obj | None:
        return next((o for o in self.objects if o.cell == cell), None)

    def free_cells(self) -> list[str]:
        """Cells with no object and outside the sign's band."""
        taken = {o.cell for o in self.objects}
        return [c for c in CELLS if c not in taken and not _in_band(c, self.sign)]


def _in_band(cell: str, sign: Sign | None) -> bool:
    return sign is not None and cell_row_col(cell)[0] == band_rows(sign.band)


def _boxes_apart(a, b, gap: float) -> bool:
    return (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1])


class InvalidScene(ValueError):
    pass


def validate(scene: Scene) -> None:
    """Raise `InvalidScene` with the reason if the scene breaks a rule of the world."""
    if scene.background not in BACKGROUND_COLORS:
        raise InvalidScene(f"unknown background {scene.background!r}")
    if len(scene.objects) > MAX_OBJECTS:
        raise InvalidScene(f"{len(scene.objects)} objects; at most {MAX_OBJECTS}")
    cells = [o.cell for o in scene.objects]
    if len(set(cells)) != len(cells):
        raise InvalidScene("two objects share a cell")
    for o in scene.objects:
        if o.shape not in SHAPES:
            raise InvalidScene(f"unknown shape {o.shape!r}")
        if o.color not in OBJECT_COLORS:
            raise InvalidScene(f"unknown colour {o.color!r}")
        if o.size not in SIZES or o.cell not in CELLS:
            raise InvalidScene(f"bad size or cell in {o}")
        if o.color == scene.background:
            raise InvalidScene(f"a {o.color} {o.shape} on a {scene.background} background")
        if abs(o.side_px - SIZES[o.size]) > SIZE_JITTER + 1e-6:
            raise InvalidScene(f"side {o.side_px} is not {o.size}")
        if max(abs(o.offset[0]), abs(o.offset[1])) > 6:
            raise InvalidScene("object too far from its cell centre")
        x0, y0, x1, y1 = o.box
        if x0 < CANVAS_MARGIN or y0 < CANVAS_MARGIN or x1 > CANVAS - CANVAS_MARGIN or y1 > CANVAS - CANVAS_MARGIN:
            raise InvalidScene(f"{o.shape} at {o.cell} leaves the canvas")
        if _in_band(o.cell, scene.sign):
            raise InvalidScene("a shape shares the sign's band")
    for i, a in enumerate(scene.objects):
        for b in scene.objects[i + 1:]:
            if not _boxes_apart(a.box, b.box, MIN_GAP):
                raise InvalidScene(f"{a.shape} at {a.cell} overlaps {b.shape} at {b.cell}")
    s = scene.sign
    if s is not None:
        if not (WORD_MIN_LEN <= len(s.word) <= WORD_MAX_LEN) or any(ch not in WORD_ALPHABET for ch in s.word):
            raise InvalidScene(f"sign word {s.word!r} must be {WORD_MIN_LEN}-{WORD_MAX_LEN} letters A-Z")
        if s.band not in BANDS or s.color not in OBJECT_COLORS:
            raise InvalidScene(f"bad sign {s}")
        if s.plaque is not None and (s.plaque not in OBJECT_COLORS or s.plaque == scene.background):
            raise InvalidScene(f"bad plaque colour {s.plaque!r}")
        surface = s.plaque or scene.background
        if not is_legible(s.color, surface):
            raise InvalidScene(f"{s.color} letters on {surface} are not a legible pair")
        from .render import sign_box
        for o in scene.objects:
            if not _boxes_apart(o.box, sign_box(s), MIN_GAP):
                raise InvalidScene(f"{o.shape} at {o.cell} touches the sign")


def is_valid(scene: Scene) -> bool:
    try:
        validate(scene)
        return True
    except InvalidScene:
        return False


# --- placement -------------------------------------------------------------------------------
PLACEMENT_TRIES = 40


def place(scene: Scene, rng: random.Random, keep: tuple[int, ...] = ()) -> Scene | None:
    """Give every object not in `keep` a jittered side and offset so the scene is valid.

    Objects whose index is in `keep` keep their exact geometry (an edit moves only what it
    touches). Returns None if no valid placement is found.
    """
    for _ in range(PLACEMENT_TRIES):
        objs = []
        for i, o in enumerate(scene.objects):
            if i in keep:
                objs.append(o)
                continue
            side = SIZES[o.size] + rng.uniform(-SIZE_JITTER, SIZE_JITTER)
            cx, cy = cell_center(o.cell)
            lo, hi = side / 2 + CANVAS_MARGIN, CANVAS - side / 2 - CANVAS_MARGIN
            # jitter, then pull back inside the canvas (a large shape in a corner sits a bit inward)
            x = min(hi, max(lo, cx + rng.uniform(-POSITION_JITTER, POSITION_JITTER)))
            y = min(hi, max(lo, cy + rng.uniform(-POSITION_JITTER, POSITION_JITTER)))
            objs.append(replace(o, side=round(side, 2), offset=(round(x - cx, 2), round(y - cy, 2))))
        candidate = scene.with_objects(objs)
        if is_valid(candidate):
            return candidate
    return None


def random_word(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return rng.choice(COMMON_WORDS)
    n = rng.randint(WORD_MIN_LEN, WORD_MAX_LEN)
    return "".join(rng.choice(WORD_ALPHABET) for _ in range(n))


def random_sign(rng: random.Random, background: str, band: str | None = None) -> Sign:
    """A sign with a legible colour pair: bare on the background, or on a plaque of another colour."""
    plaque = None
    if rng.random() < PLAQUE_PROBABILITY:
        plaque = rng.choice(sorted({s for _, s in LEGIBLE_PAIRS if s in OBJECT_COLORS and s != background}))
    surface = plaque or background
    color = rng.choice([c for c, s in LEGIBLE_PAIRS if s == surface])
    return Sign(word=random_word(rng), color=color, plaque=plaque, band=band or rng.choice(BANDS))


SIGN_PROBABILITY = 1 / 3
# Seeds at or above this are the evaluation split: training streams draw seeds below it, so
# benchmark scenes never come from a training seed.
EVAL_SEED_OFFSET = 1_000_000_000


def eval_seed(i: int) -> int:
    """The i-th held-out scene seed."""
    return EVAL_SEED_OFFSET + i
SIZE_WEIGHTS = {"small": 1.0, "medium": 1.5, "large": 1.0}
BACKGROUND_WEIGHTS = {"white": 3.0, "black": 1.0, "gray": 1.0, "cream": 1.0, "light blue": 1.0, "dark blue": 1.0}


def sample_scene(seed: int | random.Random) -> Scene:
    """A random valid scene: 0-4 shapes (at least one thing on the canvas), a sign a third of the time."""
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    while True:
        bg = rng.choices(list(BACKGROUND_WEIGHTS), weights=list(BACKGROUND_WEIGHTS.values()))[0]
        sign = random_sign(rng, bg) if rng.random() < SIGN_PROBABILITY else None
        n_max = MAX_OBJECTS if sign is None else min(MAX_OBJECTS, 3)
        n = rng.randint(0 if sign else 1, n_max)
        free = [c for c in CELLS if not _in_band(c, sign)]
        cells = rng.sample(free, n)
        objs = [Obj(shape=rng.choice(SHAPES),
                    color=rng.choice([c for c in OBJECT_COLORS if c != bg]),
                    size=rng.choices(list(SIZE_WEIGHTS), weights=list(SIZE_WEIGHTS.values()))[0],
                    cell=c) for c in cells]
        placed = place(Scene(background=bg, objects=tuple(objs), sign=sign), rng)
        if placed is not None:
            return placed
