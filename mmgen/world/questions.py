"""Questions about a picture, with exact answers the model must learn word for word.

    q = sample_question(scene, rng, split="train")
    q.text     # 'how many stars are there?'
    q.answer   # 'two'
    q.kind     # 'count'
    q.about    # {"shape": "star", "color": None}: what was asked, so a grader can recompute it
               # (questions about one thing: {"target": index | "sign", "ref": "the red one", …})

Answers are short and fixed by the scene: a colour or shape name ("red", "circle"), a cell name
("top left") or band ("top") for positions, a number word ("two"; "none" for zero), "yes"/"no"
("is there a sign?"), after the evidence for it when the question is about the shapes ("it's
orange — red? no", "two, so yes"; `verdict` takes the yes or no back), the sign's word exactly
as drawn ("OPEN"), a canonical object phrase ("a large red circle", "nothing"), every match
where it is for "where are the squares?" ("the red square in the top left and the blue square on
the right", "I see none"), or `describe(scene)` for "describe the picture".
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from .groups import group_plan
from .language import (NUMBER_WORDS, article, as_typed, canonical_object, color_word, describe, family,
                       in_reading_order, location, plural, refer, refer_sign, shape_word, the_placed_object,
                       weighted_order)
from .scene import OBJECT_COLORS, SHAPES, Scene

# the yes/no kinds and "where are the …?" stay light: weighed more, they take over neighbouring
# phrasings ("how many … can you spot?" answered with a list, "could you turn them purple?" with a
# yes; docs/RESULTS.md)
QUESTION_WEIGHTS = {"color": 2.0, "shape": 1.5, "count": 2.0, "position": 1.5, "word": 1.5, "exists": 2.0,
                    "check_color": 1.5, "background": 1.0, "describe": 1.5, "what_at": 1.0, "locate": 1.0}
QUESTION_KINDS = tuple(QUESTION_WEIGHTS)
YES, NO = "yes", "no"
ZERO_ANSWER = "none"             # "how many stars?" when there are none
EMPTY_CELL_ANSWER = "nothing"    # "what is in the top left?" when it is empty
COUNT_NOUN = "shape"             # "how many shapes?": counts shapes, never the sign
SIGN_QUESTION_RATE = 0.25        # a colour or position question is about the sign this often
# yes/no, count and what-is-there questions start from a thing in the picture this often (with the
# random ones that happen to be there, about half the exists answers end in "no", 40 % of the counts
# are "none" and 45 % of the what-is-there answers "nothing")
EXISTING_RATE = 0.4
EXISTS_SIGN_RATE = 0.15          # "is there a sign?"
COUNT_ALL_RATE = 0.25            # "how many shapes are there?"
# "where are the squares?" picks its shapes from one that is there this often: mostly a list to
# give, sometimes "I see none"
LOCATE_EXISTING_RATE = 0.8
LOCATE_NONE = "I see none"
# answers that name many things at once ("where are the squares?" -> every square where it is, a
# description -> everything): a quiz asks them last, so no later answer is in an earlier reply
MANY_THINGS_QUESTIONS = ("describe", "locate")
TRUE_CHECK_RATE = 0.5            # "is the circle red?" names its true colour this often
# a colour check says the colour it sees, then repeats the colour asked (its canonical name:
# "violet" -> "purple") right before the verdict: "it's orange — purple? no". The verdict then
# compares two colour words two tokens apart, the same token when they match; when the colour asked
# came first ("purple? it's orange, so no", six tokens back and spelt without the leading space)
# the verdict never learnt the comparison, whatever the share of yes
COLOR_CHECK_ANSWER = "it's {color} — {asked}? {verdict}"
YES_NO_QUESTIONS = ("check_color", "exists")      # (but "is there a sign?": a bare yes or no)

COLOR = family("ask_color", ("which shade is {ref}?", "what hue is {ref}?",
    
    "what colour is {ref}?", "what color is {ref}?", "which color is {ref}?", "tell me the colour of {ref}",
    "what's the color of {ref}?",
    "what colour does {ref} have?", "what color's {ref}?", "colour of {ref}?", "color of {ref}?",
    "can you tell me the color of {ref}?", "what is the colour of {ref}?", "which colour is {ref}?",
    "tell me what color {ref} is", "give me the colour of {ref}", "identify the colour of {ref}",
    "say what colour {ref} is", "I'd like to know the colour of {ref}", "describe the colour of {ref}"), (
    "what shade is {ref}?", "which hue does {ref} have?"))
SHAPE = family("ask_shape", ("which form does {ref} have?", "can you name what shape {ref} is?",
    
    "what shape is {ref}?", "which shape is {ref}?", "what kind of shape is {ref}?", "what is {ref}?",
    "what shape does {ref} have?", "tell me the shape of {ref}", "what's the shape of {ref}?",
    "which shape does {ref} have?", "what sort of shape is {ref}?", "shape of {ref}?",
    "can you tell me what shape {ref} is?", "identify the shape of {ref}", "say which shape {ref} is",
    "I'd like to know the shape of {ref}", "give me the shape of {ref}"), (
    "what form does {ref} take?", "name the shape of {ref}"))
COUNT = family("ask_count", ("can you spot how many {things} there are?", "how many {things} appear?",
    
    "how many {things} are there?", "how many {things}?", "count the {things}", "how many {things} do you see?",
    "what's the number of {things}?",
    "how many {things} are in the picture?", "how many {things} can you count?",
    "tell me how many {things} there are", "number of {things}?", "how many {things} does it have?",
    "can you count the {things}?", "how many {things} do I have?"), (
    "how many {things} can you spot?", "tell me how many {things} appear"))
POSITION = family("ask_position", ("whereabouts would I find {ref}?", "which spot is {ref} in?",
    
    "where is {ref}?", "where's {ref}?", "where is {ref} located?", "which part of the picture is {ref} in?",
    "where did you put {ref}?", "in which part is {ref}?", "where can I find {ref}?", "tell me where {ref} is",
    "what's the position of {ref}?", "where is {ref} placed?", "which cell is {ref} in?",
    "where is {ref} in the picture?"), (
    "whereabouts is {ref}?", "in which spot is {ref}?"))
WORD = family("ask_word", ("what word appears on the sign?",
    
    "what does the sign say?", "what does it say?", "what word is written?", "what's the word?", "read the sign",
    "what is written on the sign?", "what does the text say?",
    "what word is on the sign?", "tell me the word", "what is the word on the sign?", "which word is written?",
    "what text is there?", "what does the writing say?", "what's on the sign?", "which word is on the sign?",
    "what word is written here?", "spell it", "spell the word", "spell the word on the sign", "what's written here?",
    "what does the poster say?", "read it to me", "what does the word say?", "what letters are on the sign?",
    "tell me what the sign reads", "what word do you see?", "could you read the sign?",
    "what does the lettering say?", "which letters do you see?", "what's the text?", "tell me what it says",
    "what word is shown?", "read out the word", "read the sign out loud", "could you read it out?"), (
    "can you read the word out for me?", "which word appears in the picture?"))
EXISTS = family("ask_exists", ("is there {a_thing} anywhere?", "does it contain {a_thing}?",
    
    "is there {a_thing}?", "do you see {a_thing}?", "are there any {things}?", "does it have {a_thing}?",
    "is there {a_thing} in the picture?",
    "is there {a_thing} in it?", "any {things}?", "are there {things}?", "does the image have {a_thing}?",
    "have you drawn {a_thing}?", "is {a_thing} in the picture?", "do you have {a_thing} there?"), (
    "can you find {a_thing} anywhere?", "does the picture contain {a_thing}?"))
CHECK_COLOR = family("ask_check_color", ("do you call {ref} {color}?", "I am guessing {ref} is {color}, right?",
    
    "is {ref} {color}?", "is {ref} colored {color}?", "is {ref} {color} or not?",
    "{ref} is {color}, right?", "is {ref} really {color}?", "is it true that {ref} is {color}?",
    "did you make {ref} {color}?", "{ref} is {color}, isn't it?", "check: is {ref} {color}?"), (
    "would you call {ref} {color}?", "am I right that {ref} is {color}?"))
BACKGROUND = family("ask_background", ("what colour is the backdrop?", "which colour sits behind the shapes?",
    
    "what colour is the background?", "what color is the background?", "what's the background color?",
    "which background is it?", "what is the background colour?",
    "background colour?", "what colour is behind the shapes?", "which colour is the background?",
    "tell me the background colour", "what color's the background?", "what colour is the picture's background?"), (
    "what colour sits behind everything?", "tell me the backdrop colour"))
DESCRIBE = family("ask_describe", ("a quick rundown please", "summarize the picture", "what's shown here?",
    
    "describe the picture", "what's in the picture?", "describe this image", "what do you see?",
    "what is in this image?", "describe it", "what does the picture show?",
    "tell me what's in the picture", "what does it show?", "describe what you drew",
    "list what's in the picture", "what did you draw?", "explain the picture", "what's in it?",
    "tell me about the picture"), (
    "give me a rundown of the picture", "summarize what's shown"))
WHAT_AT = family("ask_what_at", ("is there anything {loc}?", "what sits {loc}?",
    
    "what is {loc}?", "what's {loc}?", "what is there {loc}?", "what do you see {loc}?", "what's there {loc}?",
    "tell me what is {loc}", "what did you draw {loc}?", "which shape is {loc}?",
    "what can you see {loc}?", "what do we have {loc}?", "what's drawn {loc}?"), (
    "anything there {loc}?", "tell me what sits {loc}"))

LOCATE = family("ask_locate", ("which places have {things}?", "show me where the {things} are",
    
    "where are the {things}?", "where are all the {things}?", "where are the {things} in the picture?",
    "where did you put the {things}?", "where can I find the {things}?", "tell me where the {things} are",
    "list the {things} and where they are", "point out the {things}", "find the {things}",
    "where are the {things} placed?", "locate the {things}", "where do the {things} sit?",
    "which spots are the {things} in?"), (
    "whereabouts are the {things}?", "in which spots are the {things}?"))


@dataclass(frozen=True)
class Question:
    text: str
    answer: str
    kind: str
    about: dict


def count_answer(n: int) -> str:
    return ZERO_ANSWER if n == 0 else NUMBER_WORDS[n]


def with_evidence(evidence: str, true: bool) -> str:
    """A yes/no answer that first says what it saw ("two, so yes"): a model writing left to
    right names the count (one look at the picture) before it compares that with the question's
    words, instead of doing both in the single token of a bare "yes" or "no"."""
    return f"{evidence}, so {YES if true else NO}"


def verdict(answer: str) -> str | None:
    """The yes or no an answer ends with ("none, so no" -> "no"); None when it has neither."""
    words = re.sub(r"[^a-z ]", " ", answer.lower()).split()
    return words[-1] if words and words[-1] in (YES, NO) else None


def _things(shape: str | None, color: str | None, rng: random.Random, n: int) -> str:
    noun = shape_word(shape, rng, n) if shape else (COUNT_NOUN if n == 1 else plural(COUNT_NOUN))
    return f"{color_word(color, rng)} {noun}" if color else noun


def _matches(o, shape: str | None, color: str | None) -> bool:
    return shape in (None, o.shape) and color in (None, o.color)


def _count_of(scene: Scene, shape: str | None, color: str | None) -> int:
    return sum(_matches(o, shape, color) for o in scene.objects)


def pick_thing(scene: Scene, rng: random.Random,
               existing_rate: float = EXISTING_RATE) -> tuple[str | None, str | None]:
    """A (shape, colour) to ask about, either of them possibly None, one that is there
    `existing_rate` of the time (or by chance)."""
    if scene.objects and rng.random() < existing_rate:
        o = rng.choice(scene.objects)
        shape, color = o.shape, o.color
    else:
        shape, color = rng.choice(SHAPES), rng.choice(list(OBJECT_COLORS))
    mode = rng.choice(("shape", "both", "color"))
    return (None if mode == "color" else shape), (None if mode == "shape" else color)


def _color(scene, rng, split):
    s = scene.sign
    if s is not None and (not scene.objects or rng.random() < SIGN_QUESTION_RATE):
        part = rng.choice(["letters"] + (["plaque"] if s.plaque else []))
        ref = refer_sign(rng, part)
        answer, about = (s.color if part == "letters" else s.plaque), {"target": "sign", "part": part, "ref": ref.text}
    elif scene.objects:
        i = rng.randrange(len(scene.objects))
        ref = refer(scene, i, rng, avoid={"color"})
        if ref is None:
            return None
        answer, about = scene.objects[i].color, {"target": i, "ref": ref.text}
    else:
        return None
    return COLOR.pick(rng, split).format(ref=ref.text), answer, about


def _shape(scene, rng, split):
    if not scene.objects:
        return None
    i = rng.randrange(len(scene.objects))
    ref = refer(scene, i, rng, avoid={"shape"})
    if ref is None:
        return None
    return SHAPE.pick(rng, split).format(ref=ref.text), scene.objects[i].shape, {"target": i, "ref": ref.text}


def _count(scene, rng, split):
    shape, color = pick_thing(scene, rng)
    if rng.random() < COUNT_ALL_RATE:
        shape = color = None                     # "how many shapes are there?"
    return _count_about(scene, shape, color, rng, split)


def count_question(scene: Scene, shape: str | None, color: str | None, rng: random.Random,
                   split: str = "train") -> Question:
    """"how many {things}?" about `shape` and `color` (either of them None: any) in `scene`."""
    return _question("count", _count_about(scene, shape, color, rng, split), rng)


def _position(scene, rng, split):
    s = scene.sign
    if s is not None and (not scene.objects or rng.random() < SIGN_QUESTION_RATE):
        ref = refer_sign(rng, "sign")
        return POSITION.pick(rng, split).format(ref=ref.text), s.band, {"target": "sign", "ref": ref.text}
    if not scene.objects:
        return None
    i = rng.randrange(len(scene.objects))
    ref = refer(scene, i, rng, avoid={"cell"})
    if ref is None:
        return None
    return POSITION.pick(rng, split).format(ref=ref.text), scene.objects[i].cell, {"target": i, "ref": ref.text}


def _word(scene, rng, split):
    if scene.sign is None:
        return None
    return WORD.pick(rng, split), scene.sign.word, {}


def _exists(scene, rng, split):
    if rng.random() < EXISTS_SIGN_RATE:
        text = EXISTS.pick(rng, split).format(a_thing="a sign", things="signs")
        return text, YES if scene.sign is not None else NO, {"sign": True}
    return _exists_about(scene, *pick_thing(scene, rng), rng, split)


def _exists_about(scene, shape, color, rng, split):
    one = _things(shape, color, rng, 1)
    text = EXISTS.pick(rng, split).format(a_thing=f"{article(one)} {one}", things=_things(shape, color, rng, 2))
    n = _count_of(scene, shape, color)
    # the evidence is the count, the same word in the same place as the answer to "how many …?" ("two,
    # so yes"), so both questions train one reading of it (after "I see", the two often gave one
    # picture different counts: docs/RESULTS.md)
    answer = with_evidence(count_answer(n), n > 0)
    return text, answer, {"shape": shape, "color": color}


def exists_question(scene: Scene, shape: str | None, color: str | None, rng: random.Random,
                    split: str = "train") -> Question:
    """"is there {a thing}?" about `shape` and `color` (either of them None: any) in `scene`,
    answered with the count it sees ("two, so yes")."""
    return _question("exists", _exists_about(scene, shape, color, rng, split), rng)


def _check_color(scene, rng, split, target: int | None = None, truth: bool | None = None):
    """"is {ref} {colour}?" about a random shape (or `target`), naming its own colour half the
    time (`TRUE_CHECK_RATE`; or when `truth`) and another colour otherwise."""
    if not scene.objects:
        return None
    i = rng.randrange(len(scene.objects)) if target is None else target
    ref = refer(scene, i, rng, avoid={"color"})
    if ref is None:
        return None
    actual = scene.objects[i].color
    if truth is None:
        truth = rng.random() < TRUE_CHECK_RATE
    color = actual if truth else rng.choice([c for c in OBJECT_COLORS if c != actual])
    text = CHECK_COLOR.pick(rng, split).format(ref=ref.text, color=color_word(color, rng))
    answer = COLOR_CHECK_ANSWER.format(color=actual, asked=color, verdict=YES if color == actual else NO)
    return text, answer, {"target": i, "color": color, "ref": ref.text}


def color_check(scene: Scene, target: int, truth: bool, rng: random.Random, split: str = "train") -> Question | None:
    """A colour check about shape `target` of `scene` whose answer is yes when `truth` (None when
    the shape cannot be told apart from the others without its colour)."""
    return _question("check_color", _check_color(scene, rng, split, target, truth), rng)


def _question(kind: str, got: tuple | None, rng: random.Random) -> Question | None:
    """A builder's (text, answer, about) as the Question a user types (None stays None)."""
    if got is None:
        return None
    text, answer, about = got
    return Question(text=as_typed(text, rng), answer=answer, kind=kind, about=about)


def _background(scene, rng, split):
    return BACKGROUND.pick(rng, split), scene.background, {}


def _describe(scene, rng, split):
    return DESCRIBE.pick(rng, split), describe(scene), {}


def _what_at(scene, rng, split):
    cells = Scene(background=scene.background, sign=scene.sign).free_cells()   # cells outside the sign's band
    taken = [o.cell for o in scene.objects]
    return _what_at_cell(scene, rng.choice(taken if taken and rng.random() < EXISTING_RATE else cells), rng, split)


def _what_at_cell(scene, cell, rng, split):
    o = scene.object_in(cell)
    answer = canonical_object(o) if o is not None else EMPTY_CELL_ANSWER
    return WHAT_AT.pick(rng, split).format(loc=location(cell, rng)), answer, {"cell": cell}


def what_at_question(scene: Scene, cell: str, rng: random.Random, split: str = "train") -> Question:
    """"what is in {cell}?" -> the shape there ("a red circle") or "nothing"."""
    return _question("what_at", _what_at_cell(scene, cell, rng, split), rng)


def position_question(scene: Scene, i: int, rng: random.Random, split: str = "train") -> Question | None:
    """"where is {shape i}?" -> its cell (None when it cannot be told apart from the others but by its cell)."""
    return _question("position", _about_object(scene, i, "position", rng, split), rng)


def locate_answer(scene: Scene, shape: str | None, color: str | None) -> str:
    """Every shape matching `shape` and `color` (None: any) where it is, or "I see none"."""
    members = tuple(i for i, o in enumerate(scene.objects) if _matches(o, shape, color))
    return group_plan(scene, members) if members else LOCATE_NONE


def _locate(scene, rng, split):
    """"where are the squares?" -> "the red square in the top left and the blue square on the
    right": every match named where it is, in reading order, the words a group edit's reply uses
    (groups.group_plan) — the same look at the picture, asked on its own."""
    if not scene.objects:
        return None          # a sign alone: the answer would always be "I see none"
    return _locate_about(scene, *pick_thing(scene, rng, LOCATE_EXISTING_RATE), rng, split)


def _locate_about(scene, shape, color, rng, split):
    text = LOCATE.pick(rng, split).format(things=_things(shape, color, rng, 2))
    return text, locate_answer(scene, shape, color), {"shape": shape, "color": color}


def locate_question(scene: Scene, shape: str | None, color: str | None, rng: random.Random,
                    split: str = "train") -> Question:
    """"where are the {things}?" about `shape` and `color` (either of them None: any) in `scene`."""
    return _question("locate", _locate_about(scene, shape, color, rng, split), rng)


BUILDERS = {"color": _color, "shape": _shape, "count": _count, "position": _position, "word": _word,
            "exists": _exists, "check_color": _check_color, "background": _background, "describe": _describe,
            "what_at": _what_at, "locate": _locate}
assert tuple(BUILDERS) == QUESTION_KINDS


# --- walked answers ----------------------------------------------------------------------------------
# A count, "is there …?" or "where are the …?" answer can first walk through the picture's shapes in
# reading order, marking each with the running count when it fits the question and "no" when it does
# not, and give the answer after a dash:
#     "how many circles?" -> "the red circle in the top left: one, the blue square in the center: no,
#                             the red circle on the right: two — two"
# Each mark compares one shape, named where it is as a description names it, with the question's
# words, and the total is the last mark: no step picks out every match in one look, which is where
# these kinds fail while descriptions do not (docs/RESULTS.md). `sample_conversation(walk_rate=…)`
# (`mmgen train lm --walk-rate`) sets the share of conversations whose answers walk; graders read the
# part after the walk (`final_answer`), so walked and plain answers grade alike.
WALK_KINDS = ("count", "exists", "locate")
WALK_DASH = " — "
NOT_COUNTED = "no"


def walk(scene: Scene, shape: str | None, color: str | None) -> str:
    """'the red circle in the top left: one, the blue square in the center: no, …': every shape of
    `scene` in reading order, marked with the running count of those matching `shape` and `color`
    (None: any), or "no"."""
    marks, n = [], 0
    for o in in_reading_order(scene.objects):
        hit = _matches(o, shape, color)
        n += hit
        marks.append(f"{the_placed_object(o)}: {NUMBER_WORDS[n] if hit else NOT_COUNTED}")
    return ", ".join(marks)


def walked_answer(scene: Scene, kind: str, about: dict, answer: str) -> str:
    """`answer` after its walk (`walk`) when `kind` is one of `WALK_KINDS` and the question is about
    shapes `scene` has; otherwise `answer` as it is ("is there a sign?", a picture with no shapes)."""
    if kind not in WALK_KINDS or about.get("sign") or not scene.objects:
        return answer
    return walk(scene, about.get("shape"), about.get("color")) + WALK_DASH + answer


def final_answer(reply: str, kind: str) -> str:
    """What a reply to a `kind` question answers: after its walk, if it walked (`walked_answer`)."""
    return reply.rsplit(WALK_DASH, 1)[-1].strip() if kind in WALK_KINDS else reply


# --- a question about what an edit changed ---------------------------------------------------------
def _about_object(scene, i, kind, rng, split):
    """A `kind` question ("color" | "position" | "what_at") about object i of `scene`."""
    if kind == "what_at":
        return _what_at_cell(scene, scene.objects[i].cell, rng, split)
    avoid = {"color": {"color"}, "position": {"cell"}}[kind]
    ref = refer(scene, i, rng, avoid=avoid)
    if ref is None:
        return None
    family, answer = {"color": (COLOR, scene.objects[i].color), "position": (POSITION, scene.objects[i].cell)}[kind]
    return family.pick(rng, split).format(ref=ref.text), answer, {"target": i, "ref": ref.text}


def _count_about(scene, shape, color, rng, split):
    text = COUNT.pick(rng, split).format(things=_things(shape, color, rng, 2))
    return text, count_answer(_count_of(scene, shape, color)), {"shape": shape, "color": color}


def _after_edit(scene: Scene, record: dict, rng, split):
    """(kind, built question) asking what `record` changed, answered from `scene` (the picture after it)."""
    kind, t = record["kind"], record["target"]
    if kind in ("recolor", "move", "resize") and t != "sign":
        q = {"recolor": "color", "move": "position", "resize": "what_at"}[kind]
        return q, _about_object(scene, t, q, rng, split)
    if kind in ("add", "add_many", "remove", "remove_group", "remove_one"):
        thing = record["after"] if kind in ("add", "add_many") else record["before"]
        thing = thing[0] if isinstance(thing, list) else thing
        color = thing["color"] if rng.random() < 0.4 else None
        return "count", _count_about(scene, thing["shape"], color, rng, split)
    if kind == "recolor_group":
        return "count", _count_about(scene, None, record["after"], rng, split)
    if kind in ("word", "background"):
        return kind, BUILDERS[kind](scene, rng, split)
    if kind in ("add_sign", "remove_sign"):
        text = EXISTS.pick(rng, split).format(a_thing="a sign", things="signs")
        return "exists", (text, YES if scene.sign is not None else NO, {"sign": True})
    return None, None       # the sign's colours and place: asked as any other question


def question_after_edit(scene: Scene, record: dict, rng: random.Random, split: str = "train") -> Question | None:
    """A question whose answer the edit `record` changed (the colour after a recolour, the count
    after an add or a removal, the place after a move…), about `scene`, the picture after it."""
    return _question(*_after_edit(scene, record, rng, split), rng)


def sample_question(scene: Scene, rng: random.Random, split: str = "train", kind: str | None = None) -> Question | None:
    """A question of `kind` (None: any, by `QUESTION_WEIGHTS`, trying others until one fits)."""
    for k in [kind] if kind else weighted_order(QUESTION_WEIGHTS, rng):
        q = _question(k, BUILDERS[k](scene, rng, split), rng)
        if q is not None:
            return q
    return None
