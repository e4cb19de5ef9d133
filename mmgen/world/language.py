"""The words of the world: what users call things, phrasing families with a held-out split,
canonical phrases for replies and answers, referring expressions, and seeded random streams.

Every sentence frame a user types goes through a `Family`: `family.pick(rng, split)` draws from
its training phrasings for split="train" and only from its held-out phrasings for split="eval",
so the benchmarks measure language the model never trained on (WORLD.md, Splits). Words —
synonyms for colours, shapes, sizes and cells, and referring expressions built from them — are
the vocabulary, shared by all splits; what is held out is the phrasing around them. A third split,
"paraphrase", draws held-out phrasings made only of words training messages use (paraphrases.py),
on evaluation seeds of its own.

    rng = stream("train", 7, "conversation")          # train and eval never share a stream
    group_phrase({"shape": "circle", "color": "red", "size": None, "cell": "top left",
                  "count": 1}, rng)                    # 'a red ball in the upper left corner'
    canonical_object(obj)                              # 'a large red circle' (answers, replies)
    refer(scene, 0, rng, avoid={"color"})              # Ref('the circle', {'shape': 'circle'}, 0)
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from .paraphrases import PARAPHRASES
from .scene import (BACKGROUND_COLORS, BANDS, CELLS, DEFAULT_SIZE, EVAL_SEED_OFFSET, OBJECT_COLORS, SHAPES, SIZES,
                    Obj, Scene, cell_row_col, eval_seed)

# --- splits and streams ----------------------------------------------------------------------
SPLITS = ("train", "eval", "paraphrase")


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    return split


def stream(split: str, seed: int, *tags: str) -> random.Random:
    """The random stream of one sample. `seed` counts samples within a split (0, 1, 2, …).

    The key names the split and the held-out splits' keys use `eval_seed(seed)`, so no evaluation
    sample ever draws from a training stream or a training seed.
    """
    check_split(split)
    if not 0 <= seed < EVAL_SEED_OFFSET:
        raise ValueError(f"seed must be in [0, {EVAL_SEED_OFFSET}), got {seed}")
    key = seed if split == "train" else eval_seed(seed)
    return random.Random(":".join((split, *tags, str(key))))


def weighted_order(weights: dict[str, float], rng: random.Random) -> list[str]:
    """All keys, in a random order where heavier keys tend to come first (sampling without replacement)."""
    left, order = dict(weights), []
    while left:
        key = rng.choices(list(left), weights=list(left.values()))[0]
        order.append(key)
        del left[key]
    return order


# --- phrasing families -------------------------------------------------------------------------
@dataclass(frozen=True)
class Family:
    """The phrasings of one thing a user says. `{slot}`s are filled by the caller with str.format."""
    name: str
    train: tuple[str, ...]
    held_out: tuple[str, ...]       # only ever produced for split="eval"

    def pick(self, rng: random.Random, split: str) -> str:
        split = check_split(split)
        if split == "train":
            return rng.choice(self.train)
        return rng.choice(self.held_out if split == "eval" else PARAPHRASES[self.name])


FAMILIES: dict[str, Family] = {}    # every family of every module, by name (the held-out test reads it)


def family(name: str, train: tuple[str, ...], held_out: tuple[str, ...]) -> Family:
    if name in FAMILIES:
        raise ValueError(f"family {name!r} defined twice")
    if not train or not held_out:
        raise ValueError(f"family {name!r} needs training and held-out phrasings")
    FAMILIES[name] = fam = Family(name, tuple(train), tuple(held_out))
    return fam


_SLOT = re.compile(r"\{(\w+)\}")


# slots only ever filled with a colour's name ("red", "light blue", "sky blue"): one or two words
COLOR_SLOTS = ("color", "bg", "plaque")


def _slot_pattern(name: str) -> str:
    return r"[\w-]+(?: [\w-]+)?" if name in COLOR_SLOTS else ".+?"


def template_regex(template: str) -> re.Pattern:
    """A pattern that finds a filled-in `template` inside a text (a colour slot matches a colour's one
    or two words, any other slot any words).

    Case-sensitive except the first letter (texts may be sentence-cased), so the upper-case
    words on signs never pass for a phrasing's lower-case words.
    """
    parts = _SLOT.split(template)   # literal, slot, literal, slot, …
    pattern = "".join(_slot_pattern(p) if i % 2 else re.escape(p) for i, p in enumerate(parts))
    if template[:1].isalpha():
        pattern = f"[{template[0].lower()}{template[0].upper()}]" + pattern[1:]
    if re.match(r"\w", template):
        pattern = r"\b" + pattern
    if re.search(r"\w$", template):
        pattern += r"\b"
    return re.compile(pattern)


CAPITALIZE_RATE = 0.5            # users start a message with a capital about half the time


def sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:]


def as_typed(text: str, rng: random.Random) -> str:
    """A user's message as typed: sometimes capitalised, sometimes not."""
    return sentence_case(text) if rng.random() < CAPITALIZE_RATE else text


# Small talk around a whole message, in training only: "ok, make the circle blue thanks". The words
# that carry the request are the same; the model learns to find them among words that do not matter,
# which is what an unseen phrasing asks of it. Eval conversations never get it (their streams and
# the benchmark stay as they were).
CHATTER_RATE = 0.25
OPENERS = ("ok ", "okay, ", "hey, ", "now ", "alright, ", "so ", "hmm, ", "great! ", "thanks! ", "nice. ",
           "cool, ", "next, ", "right, ", "good. ", "and ")
CLOSERS = (" please", ", please", " thanks", ", thank you", "!", " :)", " pls", ".")
QUESTION_CLOSERS = (" thanks", " :)", " please")


def with_chatter(text: str, rng: random.Random) -> str:
    """`text` with, sometimes, an opener before it and a closer after it (see CHATTER_RATE)."""
    if rng.random() < CHATTER_RATE:
        if text[:1].isupper() and text[1:2].islower():   # "Draw …" → "ok draw …"; "I'd …", "OPEN" stay
            text = text[0].lower() + text[1:]
        text = as_typed(rng.choice(OPENERS) + text, rng)
    if rng.random() < CHATTER_RATE:
        text += rng.choice(QUESTION_CLOSERS if text.endswith("?") else CLOSERS)
    return text


# --- vocabulary ----------------------------------------------------------------------------------
ATTRS = ("shape", "color", "size", "cell")      # what words can say about an object
SYNONYM_RATE = 0.3               # how often a user's word is a synonym instead of the canonical name
DIGIT_RATE = 0.3                 # how often a count is written "3" instead of "three"
SHAPE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "circle": ("ball", "dot"), "square": ("box",), "diamond": ("rhombus",), "cross": ("plus",),
}
COLOR_SYNONYMS: dict[str, tuple[str, ...]] = {
    "gray": ("grey",), "purple": ("violet",), "light blue": ("sky blue", "pale blue"),
    "dark blue": ("navy",),
}
SIZE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "small": ("tiny", "little"), "medium": ("medium-sized",), "large": ("big", "huge"),
}
GENERIC_NOUNS = ("shape", "thing", "object")   # a group whose shape the user leaves open
NUMBER_WORDS = ("zero", "one", "two", "three", "four")


def _word(canonical: str, synonyms: dict[str, tuple[str, ...]], rng: random.Random) -> str:
    alts = synonyms.get(canonical, ())
    return rng.choice(alts) if alts and rng.random() < SYNONYM_RATE else canonical


def plural(noun: str) -> str:
    return noun + ("es" if noun.endswith(("s", "x")) else "s")


def article(phrase: str) -> str:
    return "an" if phrase[:1] in "aeiou" else "a"


def shape_word(shape: str, rng: random.Random, n: int = 1) -> str:
    word = _word(shape, SHAPE_SYNONYMS, rng)
    return word if n == 1 else plural(word)


def color_word(color: str, rng: random.Random) -> str:
    return _word(color, COLOR_SYNONYMS, rng)


def size_word(size: str, rng: random.Random) -> str:
    return _word(size, SIZE_SYNONYMS, rng)


def count_word(n: int, rng: random.Random) -> str:
    return str(n) if rng.random() < DIGIT_RATE else NUMBER_WORDS[n]


# --- where things are ------------------------------------------------------------------------------
CELL_WORDS: dict[str, tuple[str, ...]] = {     # canonical name first
    "top left": ("top left", "upper left", "top-left"),
    "top": ("top", "top middle", "top center"),
    "top right": ("top right", "upper right", "top-right"),
    "left": ("left", "middle left", "left side"),
    "center": ("center", "centre", "middle"),
    "right": ("right", "middle right", "right side"),
    "bottom left": ("bottom left", "lower left", "bottom-left"),
    "bottom": ("bottom", "bottom middle", "bottom center"),
    "bottom right": ("bottom right", "lower right", "bottom-right"),
}
# "move it to the left" reads as a shift, so a move names the edge cells unmistakably
MOVE_TARGET_WORDS: dict[str, tuple[str, ...]] = {
    "top": ("top middle", "top center"), "left": ("left side", "middle left"),
    "right": ("right side", "middle right"), "bottom": ("bottom middle", "bottom center"),
}
# prepositions by kind of cell; the first is the canonical one
LOCATION_FORMS: dict[str, tuple[str, ...]] = {
    "corner": ("in the {}", "at the {}", "in the {} corner"),
    "side": ("on the {}", "at the {}"),          # left, right
    "end": ("at the {}",),                       # top, bottom
    "center": ("in the {}", "at the {}"),
}
BAND_WORDS: dict[str, tuple[str, ...]] = {      # where a sign's band is; canonical first
    "top": ("at the top", "across the top", "along the top"),
    "middle": ("in the middle", "across the middle"),
    "bottom": ("at the bottom", "along the bottom", "across the bottom"),
}
RELATION_WORDS: dict[str, tuple[str, ...]] = {  # canonical first
    "left of": ("to the left of", "left of", "on the left of"),
    "right of": ("to the right of", "right of", "on the right of"),
    "above": ("above",),
    "below": ("below", "under", "beneath"),
}


def cell_kind(cell: str) -> str:
    row, col = cell_row_col(cell)
    if row != 1 and col != 1:
        return "corner"
    if row == 1 and col == 1:
        return "center"
    return "side" if row == 1 else "end"


def cell_word(cell: str, rng: random.Random) -> str:
    return rng.choice(CELL_WORDS[cell])


def move_target(cell: str, rng: random.Random) -> str:
    """A cell's name after "to the …" in a move."""
    return rng.choice(MOVE_TARGET_WORDS.get(cell, CELL_WORDS[cell]))


def location(cell: str, rng: random.Random) -> str:
    """'in the top left', 'at the upper left', 'in the top-left corner', 'on the left side' …"""
    form = rng.choice(LOCATION_FORMS[cell_kind(cell)])
    words = CELL_WORDS[cell]
    if form.endswith("corner"):
        words = tuple(w for w in words if "corner" not in w)
    return form.format(rng.choice(words))


def canonical_location(cell: str) -> str:
    return LOCATION_FORMS[cell_kind(cell)][0].format(cell)


def band_phrase(band: str, rng: random.Random) -> str:
    return rng.choice(BAND_WORDS[band])


def canonical_band(band: str) -> str:
    return BAND_WORDS[band][0]


def relation_words(relation: str, rng: random.Random) -> str:
    return rng.choice(RELATION_WORDS[relation])


def relation_holds(relation: str, cell_a: str, cell_b: str) -> bool:
    """Relations hold between cells: "left of" means a column further left, and so on."""
    (ra, ca), (rb, cb) = cell_row_col(cell_a), cell_row_col(cell_b)
    return {"left of": ca < cb, "right of": ca > cb, "above": ra < rb, "below": ra > rb}[relation]


def join_list(items: list[str], oxford: bool = False) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + ("," if oxford and len(items) > 2 else "") + " and " + items[-1]


# --- objects and signs in words ---------------------------------------------------------------------
def group_phrase(g: dict, rng: random.Random, terse: bool = False) -> str:
    """A group the user asks for: {"shape","color","size","cell": value or None, "count": n}.

    'three blue boxes', 'a tiny red circle in the top-left corner', terse 'red circle top left'.
    """
    n = g.get("count", 1)
    noun = shape_word(g["shape"], rng, n) if g.get("shape") else (
        rng.choice(GENERIC_NOUNS) if n == 1 else plural(rng.choice(GENERIC_NOUNS)))
    words = [size_word(g["size"], rng) if g.get("size") else "",
             color_word(g["color"], rng) if g.get("color") else "", noun]
    core = " ".join(w for w in words if w)
    head = count_word(n, rng) if n > 1 else ("" if terse else article(core))
    phrase = f"{head} {core}".strip()
    if g.get("cell"):
        phrase += " " + (cell_word(g["cell"], rng) if terse else location(g["cell"], rng))
    return phrase


def canonical_group(g: dict) -> str:
    """The reply's words for a group: 'three blue squares', 'a large red circle in the top left'."""
    n = g.get("count", 1)
    noun = g["shape"] or GENERIC_NOUNS[0]
    core = " ".join(w for w in (g.get("size"), g.get("color"), noun if n == 1 else plural(noun)) if w)
    phrase = f"{article(core) if n == 1 else NUMBER_WORDS[n]} {core}"
    return phrase + (" " + canonical_location(g["cell"]) if g.get("cell") else "")


def canonical_object(o: Obj | dict) -> str:
    """An actual object in an answer: 'a large red circle' (the default size goes unsaid)."""
    d = o.to_dict() if isinstance(o, Obj) else o
    return canonical_group({"shape": d["shape"], "color": d["color"], "count": 1,
                            "size": None if d["size"] == DEFAULT_SIZE else d["size"]})


# A sign the user asks for, by which of its colours they name. `{word}` is the word as drawn.
SIGN_FAMILIES = {
    (False, False): family("sign", (
        'a sign that says "{word}"', 'a sign saying "{word}"', 'the word "{word}"', "the word {word}",
        'the text "{word}"', 'a sign reading "{word}"', 'a sign with the word {word}',
        'a poster reading {word}', 'a poster that says "{word}"', 'a banner saying "{word}"',
        'a label reading {word}', 'a notice that says {word}', 'the word {word} written out',
        'a board that reads "{word}"', 'the letters {word}'), (
        'a sign with "{word}" on it', 'a label that reads "{word}"')),
    (True, False): family("sign_color", ('"{word}" spelled in {color} letters', 'the word "{word}" in {color} lettering',
    
        "the word {word} in {color}", '"{word}" in {color} letters', 'a sign that says "{word}" in {color}',
        'a poster reading {word} in {color}', '{word} written in {color}', 'the word {word} in {color} letters',
        '{color} text saying "{word}"', 'the word "{word}" written in {color}'), (
        '"{word}" spelled out in {color}', '{color} lettering reading "{word}"')),
    (False, True): family("sign_plaque", ('a {plaque} panel that says "{word}"', 'the word "{word}" printed on a {plaque} sign',
    
        'a {plaque} sign that says "{word}"', "a {plaque} plaque with the word {word}",
        'the word "{word}" on a {plaque} plaque', 'a {plaque} sign saying "{word}"',
        'a {plaque} board that says "{word}"'), (
        'a {plaque} board with "{word}" on it', '"{word}" printed on a {plaque} panel')),
    (True, True): family("sign_both", ('a {plaque} panel with {color} letters that says "{word}"', 'the word "{word}" printed in {color} on a {plaque} sign',
    
        "a {plaque} plaque with the word {word} in {color}", '{color} letters saying "{word}" on a {plaque} plaque',
        'a {plaque} sign with {color} letters that says "{word}"', 'the word "{word}" in {color} on a {plaque} sign',
        'a {plaque} board with the word {word} in {color} letters'), (
        '{color} lettering reading "{word}" on a {plaque} board', 'a {plaque} panel with "{word}" printed in {color}')),
}
TERSE_SIGN_FAMILIES = {
    (False, False): family("terse_sign", ("caption: {word}",
    'sign "{word}"', '"{word}" sign', "word {word}", 'text "{word}"'), (
        'label "{word}"', 'caption "{word}"')),
    (True, False): family("terse_sign_color", ('{color} lettering, "{word}"',
    '"{word}" in {color}', '{color} "{word}"', '{color} text "{word}"'), (
        '"{word}" colored {color}', '{color} lettering "{word}"')),
    (False, True): family("terse_sign_plaque", ('{plaque} panel with "{word}"',
    
        '{plaque} sign "{word}"', '"{word}" on {plaque}', '{plaque} plaque "{word}"', '{plaque} board: {word}'), (
        '"{word}" on a {plaque} board', '{plaque} panel "{word}"')),
    (True, True): family("terse_sign_both", ('{color} lettering on {plaque}: "{word}"',
    '{color} "{word}" on {plaque}', '{plaque} sign, {color} "{word}"',
                                             '"{word}" {color} on {plaque} plaque'), (
        '{color} lettering "{word}" on {plaque} board', '{plaque} panel, {color} "{word}"')),
}


def sign_phrase(s: dict, rng: random.Random, split: str, terse: bool = False) -> str:
    """A sign the user asks for: {"word", "color", "plaque", "band": value or None}."""
    fams = TERSE_SIGN_FAMILIES if terse else SIGN_FAMILIES
    template = fams[(s.get("color") is not None, s.get("plaque") is not None)].pick(rng, split)
    text = template.format(word=s["word"], color=color_word(s["color"], rng) if s.get("color") else "",
                           plaque=color_word(s["plaque"], rng) if s.get("plaque") else "")
    return text + (" " + band_phrase(s["band"], rng) if s.get("band") else "")


def canonical_sign(s: dict) -> str:
    """'the word "OPEN" in white on a blue plaque at the top' — each part only if given."""
    text = f'the word "{s["word"]}"'
    if s.get("color"):
        text += f" in {s['color']}"
    if s.get("plaque"):
        text += f" on {article(s['plaque'])} {s['plaque']} plaque"
    return text + (" " + canonical_band(s["band"]) if s.get("band") else "")


def in_reading_order(objects) -> list:
    """`objects` sorted by their cells, top row first, left to right."""
    return sorted(objects, key=lambda o: CELLS.index(o.cell))


def the_placed_object(o: Obj) -> str:
    """'the red square in the top left': one shape and where it is, as group replies and walks name it."""
    return f"the {o.color} {o.shape} {canonical_location(o.cell)}"


def placed_objects(objects) -> list[str]:
    """['a red circle in the top left', …]: each object with its cell, in reading order."""
    return [f"{canonical_object(o)} {canonical_location(o.cell)}" for o in in_reading_order(objects)]


def describe(scene: Scene) -> str:
    """'a red circle in the top left and the word "OPEN" in white on a blue plaque at the top on a
    black background': shapes in reading order (top row first), then the sign, then the background."""
    parts = placed_objects(scene.objects)
    if scene.sign is not None:
        parts.append(canonical_sign(scene.sign.to_dict()))
    bg = f"{article(scene.background)} {scene.background} background"
    return f"{join_list(parts)} on {bg}" if parts else f"an empty {scene.background} background"


def _one_of(words) -> str:
    """A regex alternation of `words`, longest first (so "light blue" wins over "blue")."""
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_PLACES = {canonical_location(c): c for c in CELLS}
_BANDS = {canonical_band(b): b for b in BANDS}
_COLORS, _BACKGROUNDS = _one_of(OBJECT_COLORS), _one_of(BACKGROUND_COLORS)
# one thing `describe` names: a shape with its cell, or the sign
_THING = re.compile(
    rf"an? (?:(?P<size>{_one_of(s for s in SIZES if s != DEFAULT_SIZE)}) )?(?P<color>{_COLORS}) "
    rf"(?P<shape>{_one_of(SHAPES)}) (?P<where>{_one_of(_PLACES)})|"
    rf'the word "(?P<word>[A-Z]+)"(?: in (?P<sign_color>{_COLORS}))?(?: on an? (?P<plaque>{_COLORS}) plaque)?'
    rf"(?: (?P<band>{_one_of(_BANDS)}))?")
_DESCRIPTION = re.compile(rf"(?P<things>(?:(?:{_THING.pattern})(?:, | and )?)+) on an? (?P<bg>{_BACKGROUNDS}) "
                          rf"background|an empty (?P<empty>{_BACKGROUNDS}) background")


def find_description(text: str) -> str | None:
    """The `describe` phrase inside `text` (e.g. a create's reply, "Here you go: a red circle in the
    top left on a white background."), or None when `text` holds no complete one."""
    found = _DESCRIPTION.search(text)
    return None if found is None else found[0]


def read_description(text: str) -> dict | None:
    """The scene dict (no geometry) that the `describe` phrase in `text` names, or None: the inverse of
    `describe`. `mmgen eval` reads the model's layout plan with it."""
    found = _DESCRIPTION.search(text)
    if found is None:
        return None
    if found["empty"]:
        return {"background": found["empty"], "objects": [], "sign": None}
    objects, signs = [], []
    for m in _THING.finditer(found["things"]):
        if m["shape"]:
            objects.append({"shape": m["shape"], "color": m["color"], "size": m["size"] or DEFAULT_SIZE,
                            "cell": _PLACES[m["where"]]})
        else:
            signs.append({"word": m["word"], "color": m["sign_color"], "plaque": m["plaque"],
                          "band": _BANDS.get(m["band"])})
    if len(signs) > 1:          # a scene holds at most one sign
        return None
    return {"background": found["bg"], "objects": objects, "sign": signs[0] if signs else None}


# --- referring expressions ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Ref:
    """Words that pick out one thing in the current scene, and the attributes they name."""
    text: str
    attrs: dict                      # e.g. {"shape": "circle"}; {} for "it"; {"sign": part} for the sign
    target: int | str                # object index, or "sign"

# The sign by which part is meant: the whole sign, its letters (their colour), its plaque.
SIGN_REF_WORDS = {"sign": ("the sign", "the word", "the text"),
                  "letters": ("the word", "the text", "the letters", "the writing"),
                  "plaque": ("the plaque",)}
# attribute sets a reference may name, and how it says them
REF_KEYS = (("shape",), ("color",), ("color", "shape"), ("size", "shape"), ("cell",), ("shape", "cell"))


def objects_matching(scene: Scene, attrs: dict) -> list[int]:
    return [i for i, o in enumerate(scene.objects) if all(getattr(o, k) == v for k, v in attrs.items())]


def refer(scene: Scene, target: int, rng: random.Random, avoid=()) -> Ref | None:
    """An unambiguous way to name object `target`, naming none of the attributes in `avoid`.

    None when every way would be ambiguous or would name an avoided attribute.
    """
    o = scene.objects[target]
    options: list[dict] = []
    if len(scene.objects) == 1 and scene.sign is None:
        options.append({})                                   # "it"
    for keys in REF_KEYS:
        if set(keys) & set(avoid) or ("size" in keys and o.size == DEFAULT_SIZE):
            continue
        attrs = {k: getattr(o, k) for k in keys}
        if objects_matching(scene, attrs) != [target]:
            continue
        if keys == ("color",) and scene.sign and o.color in (scene.sign.color, scene.sign.plaque):
            continue                                         # "the red one" could be the red word
        options.append(attrs)
    if not options:
        return None
    attrs = rng.choice(options)
    shape = shape_word(o.shape, rng)
    loc = location(o.cell, rng) if "cell" in attrs else ""
    if not attrs:
        text = "it"
    elif "size" in attrs:
        text = f"the {size_word(o.size, rng)} {shape}"
    elif "color" in attrs:
        text = f"the {color_word(o.color, rng)} " + (shape if "shape" in attrs else "one")
    elif "cell" in attrs:
        text = f"the {shape if 'shape' in attrs else rng.choice(('one', 'shape'))} {loc}"
    else:
        text = f"the {shape}"
    return Ref(text, attrs, target)


def refer_sign(rng: random.Random, part: str = "sign") -> Ref:
    return Ref(rng.choice(SIGN_REF_WORDS[part]), {"sign": part}, "sign")


assert set(CELL_WORDS) == set(CELLS), "every cell needs its words"
