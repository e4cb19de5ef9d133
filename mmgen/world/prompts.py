"""Create prompts: a request in free words, the scene to draw, and the spec of what was asked.

    from mmgen.world.language import stream
    p = sample_prompt(stream("train", 0, "prompt"), split="train", category="counting")
    p.text      # 'draw three blue squares'
    p.scene     # the Scene to draw
    p.spec      # what the words constrain (below)
    p.reply     # 'Here you go: a blue square in the top left, a blue square in the center and ...'
    spec_matches(p.spec, judged_scene)       # {"count": True, "object_0": True, ...}
    prompt_for(17, "position")               # the benchmark's 17th position prompt (eval split)

What the words leave open follows WORLD.md: background white, size medium, shape, colour and
cell random. A spec names only what the prompt says (None = not said):

    {"category": "position",
     "objects": [{"shape": "circle", "color": "red", "size": None, "cell": None, "count": 1}, ...],
     "relations": [{"a": 0, "relation": "left of", "b": 1}],      # between object groups
     "n_objects": 2,                                              # shapes the picture holds
     "background": None,
     "sign": None | {"word": "OPEN", "color": None, "plaque": "blue", "band": None}}

Categories (`CATEGORIES`) are the GenEval-style benchmark's, plus "mixed" for training.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import permutations

from .language import (ATTRS, RELATION_WORDS, article, as_typed, check_split, color_word, describe, family,
                       group_phrase, join_list, relation_holds, relation_words, sign_phrase, stream)
from .scene import (BACKGROUND_COLORS, CELLS, DEFAULT_BACKGROUND, DEFAULT_SIZE, LEGIBLE_PAIRS, MAX_OBJECTS,
                    OBJECT_COLORS, SHAPES, SIZES, Obj, Scene, Sign, cell_row_col, is_legible, legible_pair, place,
                    random_sign)

CATEGORIES = ("single_object", "two_objects", "counting", "count_and_other", "colors", "position",
              "color_attribution", "sign", "mixed")
# count_and_other is drawn twice as often as the plain kinds: with a count and a second shape in one
# sentence, the plan is prone to give the lone shape the counted group's shape or colour, so that is
# where the extra tokens go (docs/RESULTS.md has the figures).
TRAIN_CATEGORY_WEIGHTS = {"single_object": 1.0, "two_objects": 1.0, "counting": 1.0, "count_and_other": 2.0,
                          "colors": 1.0, "position": 1.5, "color_attribution": 1.0, "sign": 1.5, "mixed": 4.0}
RELATIONS = tuple(RELATION_WORDS)

TERSE_RATE = 0.3                 # "red circle top left" rather than a sentence
COUNT_COLOR_RATE = 0.5           # "three blue squares" rather than "three squares"
RELATION_SHARE = 0.5             # position prompts: a relation between two objects, else a named cell
POSITION_COLOR_RATE = 0.4        # position prompts name the colours too
SIGN_BACKGROUND_RATE = 0.3
SIGN_SAY_RATES = {"color": 0.5, "plaque": 0.5, "band": 0.4}
SIGN_SHAPE_RATE = 0.3            # a sign prompt asks for a shape as well
MIXED_BACKGROUND_RATE = 0.35
MIXED_SIGN_RATE = 0.25
MIXED_MAX_GROUPS = 3
MIXED_COUNT_RATE = 0.2           # a group of 2+ ("two red circles")
MIXED_SAY_RATES = {"shape": 0.9, "color": 0.75, "size": 0.25, "cell": 0.3}
MIXED_RELATION_RATE = 0.25
# Training scenes for "A left of B" put A and B in one row this often (one column for above/below):
# any pair of cells that satisfies the relation is right, but with the pair drawn from all of them
# the layout plan is a guess among ~20 pairs and the small model learnt to ignore the relation
# (14900 steps: 5/22 relation prompts right, plans "top left … bottom left" whatever was asked).
RELATION_ALIGNED_RATE = 0.75
BUILD_TRIES = 50

FRAMES = family("create", ("sketch {desc}", "I'd love {desc}", "a picture showing {desc}", "put together {desc}",
    
    "draw {desc}", "make {desc}", "create {desc}", "show me {desc}", "can you draw {desc}?",
    "please draw {desc}", "I'd like {desc}", "generate an image of {desc}", "a picture of {desc}",
    "paint {desc}", "give me {desc}", "draw me {desc}", "make a picture with {desc}", "I want {desc}",
    "{desc}", "{desc}, please", "can I get {desc}?", "an image with {desc}",
    # more ways in: a small model learns a handful of templates by rote, and the benchmark asks
    # with phrasings it never saw, so training speaks as many ways as a user might
    "render {desc}", "illustrate {desc}", "depict {desc}", "produce {desc}", "generate {desc}",
    "could you draw {desc}?", "would you draw {desc}?", "can you make {desc}?", "could you make {desc}?",
    "would you make me {desc}?", "can you create {desc}?", "I'd like a picture of {desc}",
    "I want a picture of {desc}", "make me an image of {desc}", "draw a picture of {desc}",
    "create an image of {desc}", "create a picture with {desc}", "render an image with {desc}",
    "a drawing of {desc}", "a scene with {desc}", "picture {desc}", "imagine {desc}", "let's have {desc}",
    "how about {desc}?", "I need {desc}", "I need a picture of {desc}", "give me a picture of {desc}",
    "new picture: {desc}", "start a new picture with {desc}", "can you do {desc}?", "draw {desc} for me",
    "make {desc} for me", "could I have {desc}?", "please make {desc}", "design {desc}",
    "compose a picture of {desc}", "what about {desc}?", "an illustration of {desc}",
    "make an image with {desc}", "I'd like an image of {desc}", "new image with {desc}"), (
    "could you sketch {desc}?", "I'd love to see {desc}", "put together an image showing {desc}"))
TERSE_FRAMES = family("create_terse", ("quick: {desc}", "{desc}, asap", "sketch: {desc}",
    
    "{desc}", "draw {desc}", "{desc} pls", "pic: {desc}", "img of {desc}", "{desc}!", "image: {desc}",
    "drawing: {desc}", "{desc} plz", "make {desc}", "render {desc}", "{desc} thx", "new pic: {desc}"), (
    "quick sketch: {desc}", "need {desc} asap"))
BACKGROUND_SUFFIX = family("background", ("with a {bg} backdrop",
    
    "on a {bg} background", "with a {bg} background", "against a {bg} background", "on {bg}"), (
    "set on a {bg} backdrop", "and make the background {bg}"))
TERSE_BACKGROUND = family("terse_background", ("backdrop: {bg}",
    "{bg} background", "on {bg}", "{bg} bg"), (
    "{bg} backdrop pls", "backdrop in {bg}"))
BACKGROUND_WITH_SIGN = family("background_sign", ("{rest} against a {bg} backdrop", "a {bg} background carrying {rest}",
       # a picture of only a sign
    "a {bg} background with {rest}", "{rest} on a {bg} background"), (
    "{rest} set against a {bg} backdrop", "a {bg} backdrop carrying {rest}"))
# The reply says what the picture will hold, object by object in reading order (top row first) with
# each one's cell: a layout plan in words. The transformer writes it before the picture's codes, which
# it draws in the same order, so "three red circles" is settled as three cells in a few dozen words,
# and each code then only has to follow the words about its cell, not count. The picture's loss given
# the plan is far lower than given the old replies, which restated the request (README, the transformer).
CREATE_REPLIES = ("Here you go: {scene}.", "Sure! Here's {scene}.", "Here it is: {scene}.", "Done: {scene}.")


@dataclass(frozen=True)
class Prompt:
    text: str
    scene: Scene
    spec: dict
    reply: str


# --- specs: what each category asks for ---------------------------------------------------------
def _group(count: int = 1, **said) -> dict:
    return {**{k: said.get(k) for k in ATTRS}, "count": count}


def make_spec(category: str, groups: list[dict], relations: list[dict] | None = None,
              background: str | None = None, sign: dict | None = None) -> dict:
    return {"category": category, "objects": groups, "relations": relations or [],
            "n_objects": sum(g["count"] for g in groups), "background": background, "sign": sign}


def _colors_on(bg: str) -> list[str]:
    return [c for c in OBJECT_COLORS if c != bg]


def _single_object(rng):
    return make_spec("single_object", [_group(shape=rng.choice(SHAPES))]), None


def _colors(rng):
    color = rng.choice(_colors_on(DEFAULT_BACKGROUND))
    return make_spec("colors", [_group(shape=rng.choice(SHAPES), color=color)]), None


def _two_objects(rng):
    a, b = rng.sample(SHAPES, 2)
    return make_spec("two_objects", [_group(shape=a), _group(shape=b)]), None


def _color_attribution(rng):
    (a, b), (ca, cb) = rng.sample(SHAPES, 2), rng.sample(_colors_on(DEFAULT_BACKGROUND), 2)
    return make_spec("color_attribution", [_group(shape=a, color=ca), _group(shape=b, color=cb)]), None


def _counting(rng):
    color = rng.choice(_colors_on(DEFAULT_BACKGROUND)) if rng.random() < COUNT_COLOR_RATE else None
    return make_spec("counting", [_group(rng.randint(2, MAX_OBJECTS), shape=rng.choice(SHAPES), color=color)]), None


def _count_and_other(rng):
    """A counted group and one other shape ("three red squares and a blue circle", either way round):
    the count has to hold with something else in the picture, which a counting prompt alone never asks."""
    counted, other = rng.sample(SHAPES, 2)
    ca, cb = (rng.choice(_colors_on(DEFAULT_BACKGROUND)) if rng.random() < COUNT_COLOR_RATE else None
              for _ in range(2))
    groups = [_group(rng.randint(2, MAX_OBJECTS - 1), shape=counted, color=ca), _group(shape=other, color=cb)]
    if rng.random() < 0.5:
        groups.reverse()
    return make_spec("count_and_other", groups), None


def _position(rng):
    colors = rng.sample(_colors_on(DEFAULT_BACKGROUND), 2) if rng.random() < POSITION_COLOR_RATE else [None, None]
    if rng.random() < RELATION_SHARE:
        a, b = rng.sample(SHAPES, 2)
        return make_spec("position", [_group(shape=a, color=colors[0]), _group(shape=b, color=colors[1])],
                         [{"a": 0, "relation": rng.choice(RELATIONS), "b": 1}]), None
    return make_spec("position", [_group(shape=rng.choice(SHAPES), color=colors[0], cell=rng.choice(CELLS))]), None


def said_sign(rng: random.Random, sign: Sign, rates: dict[str, float]) -> dict:
    """A sign spec: the word, and each of color/plaque/band with its rate of being said."""
    return {"word": sign.word, **{k: getattr(sign, k) if rng.random() < p else None for k, p in rates.items()}}


def _sign(rng):
    bg = rng.choice(list(BACKGROUND_COLORS)) if rng.random() < SIGN_BACKGROUND_RATE else None
    base = bg or DEFAULT_BACKGROUND
    sign = random_sign(rng, base)
    groups = []
    if rng.random() < SIGN_SHAPE_RATE:
        groups.append(_group(shape=rng.choice(SHAPES), color=rng.choice(_colors_on(base))))
    return make_spec("sign", groups, background=bg, sign=said_sign(rng, sign, SIGN_SAY_RATES)), sign


def _mixed(rng):
    bg = rng.choice(list(BACKGROUND_COLORS)) if rng.random() < MIXED_BACKGROUND_RATE else None
    base = bg or DEFAULT_BACKGROUND
    sign = random_sign(rng, base) if rng.random() < MIXED_SIGN_RATE else None
    free = Scene(background=base, sign=sign).free_cells()
    room = min(MAX_OBJECTS, len(free))
    groups: list[dict] = []
    for _ in range(rng.randint(1, MIXED_MAX_GROUPS)):
        left = room - sum(g["count"] for g in groups)
        if left <= 0:
            break
        count = rng.randint(2, left) if left >= 2 and rng.random() < MIXED_COUNT_RATE else 1
        said = {k for k, p in MIXED_SAY_RATES.items() if rng.random() < p}
        if count > 1:
            said.discard("cell")             # a group of several spreads over cells of its own
        if not said & {"shape", "color"}:
            said.add("shape")
        taken = {g["cell"] for g in groups}
        values = {"shape": rng.choice(SHAPES), "color": rng.choice(_colors_on(base)),
                  "size": rng.choice(list(SIZES)), "cell": rng.choice([c for c in free if c not in taken])}
        groups.append(_group(count, **{k: values[k] for k in said}))
    described = [tuple(g[k] for k in ATTRS) for g in groups]
    if len(set(described)) < len(described):
        return None                          # two groups the words could not tell apart
    relations = []
    if (len(groups) >= 2 and rng.random() < MIXED_RELATION_RATE
            and all(g["count"] == 1 and g["cell"] is None for g in groups[:2])):
        relations = [{"a": 0, "relation": rng.choice(RELATIONS), "b": 1}]
    spec_sign = None if sign is None else said_sign(rng, sign, SIGN_SAY_RATES)
    return make_spec("mixed", groups, relations, background=bg, sign=spec_sign), sign


BUILDERS = {"single_object": _single_object, "two_objects": _two_objects, "counting": _counting,
            "count_and_other": _count_and_other, "colors": _colors, "position": _position,
            "color_attribution": _color_attribution, "sign": _sign, "mixed": _mixed}
assert tuple(BUILDERS) == CATEGORIES


def _aligned(relation: str, cell_a: str, cell_b: str) -> bool:
    """The two cells share the row ("left of", "right of") or the column ("above", "below")."""
    (ra, ca), (rb, cb) = cell_row_col(cell_a), cell_row_col(cell_b)
    return ra == rb if relation in ("left of", "right of") else ca == cb


def realize(spec: dict, sign: Sign | None, rng: random.Random, split: str = "eval") -> Scene | None:
    """A valid scene that does what `spec` says; what it leaves open follows WORLD.md's defaults.
    Training scenes mostly align related objects (RELATION_ALIGNED_RATE); other splits draw their
    stream exactly as before, so benchmarks stay comparable."""
    bg = spec["background"] or DEFAULT_BACKGROUND
    free = Scene(background=bg, sign=sign).free_cells()
    slots = [gi for gi, g in enumerate(spec["objects"]) for _ in range(g["count"])]
    if len(slots) > min(MAX_OBJECTS, len(free)):
        return None
    cells = [spec["objects"][gi]["cell"] for gi in slots]
    named = [c for c in cells if c]
    if len(set(named)) < len(named) or any(c not in free for c in named):
        return None
    for r in spec["relations"]:
        ia, ib = slots.index(r["a"]), slots.index(r["b"])
        pairs = [(x, y) for x in free for y in free if x != y and relation_holds(r["relation"], x, y)
                 and (cells[ia] == x if cells[ia] else x not in cells)
                 and (cells[ib] == y if cells[ib] else y not in cells)]
        if not pairs:
            return None
        if split == "train" and rng.random() < RELATION_ALIGNED_RATE:
            pairs = [(x, y) for x, y in pairs if _aligned(r["relation"], x, y)] or pairs
        cells[ia], cells[ib] = rng.choice(pairs)
    rest = [c for c in free if c not in cells]
    rng.shuffle(rest)
    objs = []
    for gi, cell in zip(slots, cells):
        g = spec["objects"][gi]
        objs.append(Obj(shape=g["shape"] or rng.choice(SHAPES), color=g["color"] or rng.choice(_colors_on(bg)),
                        size=g["size"] or DEFAULT_SIZE, cell=cell or rest.pop()))
    return place(Scene(background=bg, objects=tuple(objs), sign=sign), rng)


# --- words -------------------------------------------------------------------------------------------
def _object_pieces(spec: dict, phrase, rel_words) -> list[str]:
    """Group phrases, with each relation read as 'A to the left of B'."""
    groups = [phrase(g) for g in spec["objects"]]
    pieces, related = [], set()
    for r in spec["relations"]:
        pieces.append(f"{groups[r['a']]} {rel_words(r['relation'])} {groups[r['b']]}")
        related |= {r["a"], r["b"]}
    return pieces + [p for i, p in enumerate(groups) if i not in related]


def prompt_text(spec: dict, rng: random.Random, split: str) -> str:
    """The user's words for `spec` (sentence or terse; held-out phrasings only for split="eval")."""
    terse = rng.random() < TERSE_RATE
    pieces = _object_pieces(spec, lambda g: group_phrase(g, rng, terse), lambda r: relation_words(r, rng))
    objs = rng.choice((", ", " and ", " + ")).join(pieces) if terse else join_list(pieces)
    sign = sign_phrase(spec["sign"], rng, split, terse) if spec["sign"] else ""
    desc = (", " if terse else " and ").join(p for p in (objs, sign) if p)
    if spec["background"]:
        bg = color_word(spec["background"], rng)
        if terse:
            desc += ", " + TERSE_BACKGROUND.pick(rng, split).format(bg=bg)
        elif objs:
            objs += " " + BACKGROUND_SUFFIX.pick(rng, split).format(bg=bg)
            desc = " and ".join(p for p in (objs, sign) if p)
        else:
            desc = BACKGROUND_WITH_SIGN.pick(rng, split).format(bg=bg, rest=sign)
    text = (TERSE_FRAMES if terse else FRAMES).pick(rng, split).format(desc=desc)
    return as_typed(text, rng)


def sample_prompt(rng: random.Random, split: str = "train", category: str | None = None) -> Prompt:
    """A create prompt of `category` (None: the training mixture), its scene, spec and reply."""
    check_split(split)
    if category is None:
        category = rng.choices(list(TRAIN_CATEGORY_WEIGHTS), weights=list(TRAIN_CATEGORY_WEIGHTS.values()))[0]
    if category not in BUILDERS:
        raise ValueError(f"category must be one of {CATEGORIES}, not {category!r}")
    build = BUILDERS[category]
    for _ in range(BUILD_TRIES):
        built = build(rng)
        scene = None if built is None else realize(built[0], built[1], rng, split)
        if scene is not None:
            spec = built[0]
            reply = rng.choice(CREATE_REPLIES).format(scene=describe(scene))
            prompt = Prompt(text=prompt_text(spec, rng, split), scene=scene, spec=spec, reply=reply)
            return with_illegible_ask(prompt, rng, split) if category == "sign" else prompt
    raise RuntimeError(f"no valid {category} prompt in {BUILD_TRIES} tries")


# A sign prompt may name colours its picture cannot letter legibly: the picture keeps the nearest
# legible pair (scene.legible_pair) and the reply says so first.
ILLEGIBLE_PLAQUE_RATE = 0.5     # a plaque no letters read on (brown, pink), where the pair is its nearest
ILLEGIBLE_ASK_RATE = 0.1        # else a word colour not legible on its surface
ILLEGIBLE_REPLIES = ("{asked} letters on {surface} would be hard to read, so I used {color}.",
                     "I used {color} letters instead of {asked}: {asked} on {surface} is hard to read.")
ILLEGIBLE_PLAQUE_REPLIES = ("Letters are hard to read on {a_asked} plaque, so I used {color} on {plaque}.",
                            "I used {a_plaque} plaque instead of {asked}: no letters read well on {asked}.")


def illegible_ask(spec: dict, scene: Scene, rng: random.Random) -> str | None:
    """A word colour to ask for that is not legible on the sign's surface, whose nearest legible
    colour there is the one `scene` has; None if the spec names no colour or none fits."""
    sign = scene.sign
    if sign is None or not spec.get("sign") or spec["sign"].get("color") is None:
        return None
    surface = sign.plaque or scene.background
    options = [c for c in OBJECT_COLORS if c != surface and not is_legible(c, surface)
               and legible_pair(c, surface, plaque_ok=False)[0] == sign.color]
    return rng.choice(options) if options else None


def illegible_plaques(spec: dict, scene: Scene) -> list[str]:
    """Plaque colours no word colour is legible on whose nearest legible pair is the one `scene` has
    (scene.legible_pair), to ask for instead of its plaque; none if the spec names no plaque."""
    sign = scene.sign
    if sign is None or sign.plaque is None or not spec.get("sign") or spec["sign"].get("plaque") is None:
        return []
    unlettered = [q for q in OBJECT_COLORS if q not in {s for _, s in LEGIBLE_PAIRS}]
    return [q for q in unlettered
            if legible_pair(spec["sign"].get("color"), q, background=scene.background) == (sign.color, sign.plaque)]


def with_illegible_ask(prompt: Prompt, rng: random.Random, split: str) -> Prompt:
    """`prompt` asking for an illegible plaque or word colour instead (`ILLEGIBLE_…_RATE`), answered
    as `illegible_plaques` or `illegible_ask` says; `prompt` itself when neither is drawn or fits."""
    sign, said = prompt.scene.sign, prompt.spec.get("sign") or {}
    plaques = illegible_plaques(prompt.spec, prompt.scene)
    if plaques and rng.random() < ILLEGIBLE_PLAQUE_RATE:
        plaque = rng.choice(plaques)
        spoken = {**prompt.spec, "sign": {**said, "plaque": plaque}}
        note = rng.choice(ILLEGIBLE_PLAQUE_REPLIES).format(asked=plaque, color=sign.color, plaque=sign.plaque,
                                                           a_asked=f"{article(plaque)} {plaque}",
                                                           a_plaque=f"{article(sign.plaque)} {sign.plaque}")
        spec = {**prompt.spec, "illegible_plaque": plaque}   # what was said; spec["sign"] is what is graded
    else:
        asked = illegible_ask(prompt.spec, prompt.scene, rng) if rng.random() < ILLEGIBLE_ASK_RATE else None
        if asked is None:
            return prompt
        spoken = {**prompt.spec, "sign": {**said, "color": asked}}
        note = rng.choice(ILLEGIBLE_REPLIES).format(asked=asked, color=sign.color,
                                                    surface=sign.plaque or prompt.scene.background)
        spec = {**prompt.spec, "illegible_color": asked}
    return Prompt(text=prompt_text(spoken, rng, split), scene=prompt.scene, spec=spec,
                  reply=f"{note[0].upper()}{note[1:]} {prompt.reply}")


def prompt_for(seed: int, category: str | None = None, split: str = "eval") -> Prompt:
    """The `seed`-th prompt of `category` in `split`: its own stream, so a benchmark is reproducible."""
    return sample_prompt(stream(split, seed, "prompt", category or "any"), split, category)


# --- grading -----------------------------------------------------------------------------------------
def _fits(group: dict, obj: dict, defaults: bool) -> bool:
    for k in ATTRS:
        want = group.get(k)
        if want is None and k == "size" and defaults:
            want = DEFAULT_SIZE
        if want is not None and obj.get(k) != want:
            return False
    return True


def _related(relation: str, a: dict, b: dict) -> bool:
    return a.get("cell") in CELLS and b.get("cell") in CELLS and relation_holds(relation, a["cell"], b["cell"])


def spec_matches(spec: dict, scene: Scene | dict, defaults: bool = False) -> dict[str, bool]:
    """Check a scene (e.g. the judge's reading of a picture) against a spec, one entry per constraint.

    count: the picture holds exactly `n_objects` shapes; object_i: enough shapes fit group i;
    relation_i: two shapes fit relation i; objects: one assignment of distinct shapes satisfies
    every group and relation at once; background; sign (present iff asked); sign_word/_color/
    _plaque/_band for what was said. With `defaults=True`, what the prompt left unsaid must take
    WORLD.md's default too (white background, medium size) — the training data always does.
    """
    d = scene.to_dict() if isinstance(scene, Scene) else scene
    objs = d.get("objects") or []
    groups, relations = spec["objects"], spec["relations"]
    out = {"count": len(objs) == spec["n_objects"]}
    for i, g in enumerate(groups):
        out[f"object_{i}"] = sum(_fits(g, o, defaults) for o in objs) >= g["count"]
    for i, r in enumerate(relations):
        out[f"relation_{i}"] = any(_fits(groups[r["a"]], x, defaults) and _fits(groups[r["b"]], y, defaults)
                                   and _related(r["relation"], x, y) for x, y in permutations(objs, 2))
    wants = [gi for gi, g in enumerate(groups) for _ in range(g["count"])]
    first = {gi: wants.index(gi) for gi in set(wants)}

    def assignment_ok(pick: tuple[dict, ...]) -> bool:
        return (all(_fits(groups[gi], o, defaults) for gi, o in zip(wants, pick))
                and all(_related(r["relation"], pick[first[r["a"]]], pick[first[r["b"]]]) for r in relations))
    out["objects"] = any(assignment_ok(p) for p in permutations(objs, len(wants)))
    background = spec["background"] or (DEFAULT_BACKGROUND if defaults else None)
    if background:
        out["background"] = d.get("background") == background
    sign, want = d.get("sign"), spec["sign"]
    out["sign"] = (sign is not None) == (want is not None)
    for k, v in (want or {}).items():
        if v is not None:
            out[f"sign_{k}"] = sign is not None and sign.get(k) == v
    return out

