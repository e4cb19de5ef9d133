"""Conversations: several turns mixing create, edit, ask and variation, with exact ground truth.

    conv = sample_conversation(seed=3, split="train")   # deterministic per (seed, split)
    for turn in conv.turns:
        turn.role, turn.text     # "user" | "assistant", the words
        turn.image               # a Scene (ground truth) or None; render(turn.image) draws it
        turn.task, turn.meta     # "create" | "edit" | "ask" | "variation" (| "chat": small talk), and what grades it

A conversation is 1-6 exchanges (a user turn, then an assistant turn). The first is a create or a
picture the user brings; later ones edit or ask about the latest picture, ask for a variation,
start a new picture, or bring another picture of the user's own (a user turn with an image,
then a question or an edit about it). Each assistant image carries its exact scene.

The user turn's `meta` holds what grades the reply: {"spec": …} for create (prompts.py),
{"edit": record} for edit (edits.py), {"question": kind, "about": …, "answer": …} for ask
(questions.py), {"source": scene.to_dict()} for variation. Eval conversations use only held-out
phrasings and streams of their own (language.stream).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from .edits import PLURAL_KINDS, sample_edit
from .groups import groups
from .language import as_typed, describe, family, objects_matching, stream, with_chatter
from .prompts import CREATE_REPLIES, make_spec, sample_prompt
from .questions import (MANY_THINGS_QUESTIONS, color_check, count_question, exists_question,
                        locate_question, position_question, question_after_edit, sample_question, walked_answer,
                        what_at_question)
from .scene import OBJECT_COLORS, SHAPES, Scene, place, sample_scene
from .typos import with_typos

MIN_EXCHANGES, MAX_EXCHANGES = 1, 6
FIRST_WEIGHTS = {"create": 0.8, "user_image": 0.2}
NEXT_WEIGHTS = {"edit": 0.4, "ask": 0.25, "variation": 0.1, "create": 0.12, "user_image": 0.13}
USER_IMAGE_EDIT_RATE = 0.4       # a picture the user brings is edited this often, else asked about
INTRO_RATE = 0.5                 # "Here's a picture I made." before the request
# A first request worded as an edit ("add a red star at the top") with no picture yet is a create:
# it gets a create's reply and picture. Without these, held-out create wordings drew edit replies
# ("Added a red diamond in the center.", 20 of 50 position prompts at 14900 steps): the model read
# the words, not whether there was a picture to edit.
ADD_AS_CREATE_RATE = 0.1
VARIATION_TRIES = 20
# A sign conversation (`sample_conversation(sign_rate=…)`, the data mix for teaching words): it
# opens on a picture with a sign, and its later turns change or read the word this often each
SIGN_TASK_RATE = 0.5
TASKS = ("create", "edit", "ask", "variation")
# An edit chain (`sample_conversation(chain_rate=…)`, the data mix for following the picture): a
# picture, 2-5 edits, each followed this often by a question about what it changed, then a final
# question about the last change — the answer is only in the latest picture, not in the words
CHAIN_EDITS = (2, 5)
CHAIN_ASK_RATE = 0.3
# A quiz (`sample_conversation(quiz_rate=…)`, the data mix for answering from the picture): 1-3
# pictures, most of them the user's and about two in three with a sign (half are drawn with one,
# the rest carry one a third of the time), each followed by 1-4 different questions, the first
# about the word half the time when there is a sign, and no later one (signs are read right at
# ~1.00 since 22925, so the other half of those first questions go where answers still fail).
# A user's picture comes with no words to copy an answer from, so its questions are only answered
# by reading the codes, and no answer is given away by an earlier reply; several questions share
# one picture, so the ~260 tokens of its codes buy several answers.
QUIZ_PICTURES = (1, 3)
QUIZ_QUESTIONS = (1, 4)
QUIZ_USER_IMAGE_RATE = 0.75
QUIZ_SIGN_RATE = 0.5
QUIZ_WORD_FIRST_RATE = 0.5
QUIZ_TRIES = 10                  # draws for a question not asked yet about this picture
# A quiz picture with two or more shapes is a drill this often: after any word question it is asked
# questions of one drill kind only, picked by `DRILL_SHARES`. In each, the answers differ only by what
# each question names, which is what the answer has to read the picture for.
# Colour checks: up to `COLOR_CHECK_DRILL_SHAPES` of its shapes, each twice, all in a random order —
# once with its own colour and once with another ("is the star red?" → "it's red — red? yes"; "is
# the star blue?" → "it's red — blue? no"). The verdict compares the colour asked with the colour
# seen, two words two tokens apart; the two answers of a pair differ only in that comparison, and
# one picture's codes buy up to six of them.
# Counts: up to `COUNT_DRILL_QUESTIONS` questions, each about a different set of shapes (every shape,
# a shape, a colour, a shape in a colour) and one about a thing not there, in a random order — "how
# many circles?" "two", "how many red shapes?" "one", "how many stars?" "none" — each asked instead as
# "is there …?" this often (`EXISTS_IN_COUNT_DRILL_RATE`), whose answer starts with the same count:
# "none, so no".
# Cells: up to `CELL_DRILL_SHAPES` shapes, each asked where it is, or what is in its cell,
# and what is in one empty cell ("nothing"), in a random order; no answer names another's shape or cell.
# Locates: "where are the …?" about up to `LOCATE_DRILL_SETS` sets of shapes that share no shape (never
# "where are the shapes?", whose list would give the absent thing away), and about a thing not there
# ("I see none"), in a random order.
DRILL_RATE = 0.4
DRILL_SHARES = {"color_check": 0.2, "count": 0.3, "cells": 0.3, "locate": 0.2}
COLOR_CHECK_DRILL_SHAPES = 3
COUNT_DRILL_QUESTIONS = 4
EXISTS_IN_COUNT_DRILL_RATE = 0.5
CELL_DRILL_SHAPES = 3
CELL_DRILL_PLACE_RATE = 0.5      # a cell drill's shape is asked where it is this often, else what is in its cell
LOCATE_DRILL_SETS = 2
# A group conversation (`sample_conversation(group_rate=…)`, the data mix for edits of several shapes
# at once and of size): a picture with shapes that share a shape or a colour (the user's half the
# time, else drawn), then 1-3 edits of `edits.PLURAL_KINDS`, each kind first as often where it fits,
# each followed this often by a question about what it changed. In the world's own mix these edits
# are rare ("remove all the …" fits only a picture with a group: 0.5 % of user turns) and they are
# the benchmark's worst edits, even in the training phrasings.
GROUP_EDITS = (1, 3)
GROUP_USER_IMAGE_RATE = 0.5
GROUP_ASK_RATE = 0.3
GROUP_PICTURE_TRIES = 50         # pictures drawn until one has such a group (else the last is used)
GROUP_EDIT_TRIES = 4             # draws of an edit kind, each naming a group picked at random
# the draw kept is the one whose edit touches the most shapes: a group picked at random is mostly a
# pair ("remove all the …" cannot take every shape of a picture without a sign), while the pictures
# people edit hold groups of three and four as often

INTRO = family("user_image", ("have a peek at this.", "I'm sharing my picture.",
    
    "here's a picture I made.", "look at this image.", "this is my picture.", "I drew this.",
    "check this one out.", "here's an image.",
    "here is my image.", "I made this picture.", "this is a picture I drew.", "here's something I made.",
    "have a look at this.", "look at my picture."), (
    "take a peek at my drawing.", "sharing a picture with you."))
VARIATION = family("variation", ("mix it up", "a fresh layout please",
    
    "another one like this", "give me a variation", "make another version", "same shapes, different layout",
    "can you do a variation?", "another one", "rearrange it", "shuffle the layout",
    "a different layout please", "do it again with a new layout", "same things, new positions",
    "move everything around", "one more like this", "make a variant", "another arrangement", "reshuffle it",
    "give me another version", "new layout, same shapes", "try a new layout", "lay them out differently",
    "shuffle these around", "rearrange the same shapes", "can you mix the shapes up?",
    "lay these things out another way", "put the same things somewhere new"), (
    "mix up the arrangement please", "try a fresh arrangement of the same things"))
# like a create's reply, a variation's says the new layout before drawing it (prompts.CREATE_REPLIES)
VARIATION_REPLIES = ("Here's a variation: {scene}.", "Same things, new layout: {scene}.",
                     "Here's a new arrangement: {scene}.")


@dataclass
class Turn:
    role: str                              # "user" | "assistant"
    text: str
    image: Scene | None = None             # ground truth of the picture this turn shows
    task: str | None = None                # one of TASKS, or SMALL_TALK_TASK
    meta: dict = field(default_factory=dict)


@dataclass
class Conversation:
    id: str
    split: str
    seed: int
    turns: list[Turn]

    def images(self) -> list[Scene]:
        return [t.image for t in self.turns if t.image is not None]


def sample_variation(scene: Scene, rng: random.Random) -> Scene | None:
    """Same shapes (shape, colour, size), background and sign; every shape in a new cell."""
    if not scene.objects:
        return None
    free = Scene(background=scene.background, sign=scene.sign).free_cells()
    if len(free) < len(scene.objects):
        return None
    for _ in range(VARIATION_TRIES):
        cells = rng.sample(free, len(scene.objects))
        if any(c == o.cell for c, o in zip(cells, scene.objects)):
            continue
        placed = place(scene.with_objects(replace(o, cell=c, offset=(0.0, 0.0), side=None)
                                          for o, c in zip(scene.objects, cells)), rng)
        if placed is not None:
            return placed
    return None


# Each exchange returns (task, user text, user meta, reply, assistant image) or None if it can't apply.
def _create(current, rng, split):
    if current is None and split == "train" and rng.random() < ADD_AS_CREATE_RATE:
        e = sample_edit(Scene(), rng, split, kind="add")
        spec = make_spec("add_as_create", [e.record["asked"]])
        return "create", e.text, {"spec": spec}, rng.choice(CREATE_REPLIES).format(scene=describe(e.scene)), e.scene
    p = sample_prompt(rng, split)
    return "create", p.text, {"spec": p.spec}, p.reply, p.scene


def _edit(current, rng, split, kind=None):
    e = sample_edit(current, rng, split, kind=kind)
    return None if e is None else ("edit", e.text, {"edit": e.record}, e.reply, e.scene)


def _asking(q, **meta):
    """The exchange that asks question `q` (None stays None); `meta` joins the user turn's meta."""
    return None if q is None else ("ask", q.text, {"question": q.kind, "about": q.about, "answer": q.answer, **meta},
                                   q.answer, None)


def _ask(current, rng, split, kind=None):
    return _asking(sample_question(current, rng, split, kind=kind))


def _variation(current, rng, split):
    v = sample_variation(current, rng)
    if v is None:
        return None
    return ("variation", as_typed(VARIATION.pick(rng, split), rng), {"source": current.to_dict()},
            rng.choice(VARIATION_REPLIES).format(scene=describe(v)), v)


EXCHANGES = {"create": _create, "edit": _edit, "ask": _ask, "variation": _variation}


def _sign_create(current, rng, split):
    p = sample_prompt(rng, split, category="sign")
    return "create", p.text, {"spec": p.spec}, p.reply, p.scene


def _sign_scene(rng) -> Scene:
    while True:
        scene = sample_scene(rng)
        if scene.sign is not None:
            return scene


def _sign_exchange(task, current, rng, split):
    """A sign conversation's exchange: about the word when it can be, else as usual."""
    if current is None and task == "create":
        return _sign_create(current, rng, split)
    if current is not None and current.sign is not None and rng.random() < SIGN_TASK_RATE:
        if task in ("edit", "ask"):
            return EXCHANGES[task](current, rng, split, kind="word")
    return EXCHANGES[task](current, rng, split)


def _ask_after(current, record, rng, split):
    return _asking(question_after_edit(current, record, rng, split))


def _chain_tasks(rng) -> list[str]:
    """The exchanges of an edit chain after its first picture."""
    tasks = []
    for _ in range(rng.randint(*CHAIN_EDITS)):
        tasks.append("edit")
        if rng.random() < CHAIN_ASK_RATE:
            tasks.append("ask_after")
    return tasks + ["ask_after"] * (tasks[-1] != "ask_after")


def _user_turn_text(text, user_image, rng, split):
    if user_image is not None and rng.random() < INTRO_RATE:
        text = f"{as_typed(INTRO.pick(rng, split), rng)} {text}"
    return with_chatter(text, rng) if split == "train" else text


def _exchange_turns(got, shown, rng, split) -> list[Turn]:
    """The user and assistant turns of exchange `got` (`shown`: the user's picture it comes with)."""
    kind, text, meta, reply, image = got
    return [Turn("user", _user_turn_text(text, shown, rng, split), shown, kind, meta),
            Turn("assistant", reply, image, kind)]


def sample_chain(seed: int, split: str = "train") -> Conversation:
    """An edit chain: a picture (drawn, or the user's), 2-5 edits, questions about what changed."""
    rng = stream(split, seed, "chain")
    user_image = sample_scene(rng) if rng.random() < FIRST_WEIGHTS["user_image"] else None
    turns: list[Turn] = []
    current, record = user_image, None
    first = _edit(current, rng, split) if user_image is not None else _create(None, rng, split)
    for task in [None] + _chain_tasks(rng):
        if task == "edit":
            got = _edit(current, rng, split)
        elif task == "ask_after":
            got = (record and _ask_after(current, record, rng, split)) or _ask(current, rng, split)
        else:
            got = first
        turns += _exchange_turns(got, user_image if task is None else None, rng, split)
        record = got[2].get("edit", record)
        current = got[4] if got[4] is not None else current
    return Conversation(id=f"{split}-chain-{seed}", split=split, seed=seed, turns=turns)


def _group_picture(rng, split):
    """A group conversation's picture: (the user's picture, None) or (None, the exchange that draws
    it), the first of `GROUP_PICTURE_TRIES` draws with two or more shapes that share a shape or a
    colour (else the last draw)."""
    users = rng.random() < GROUP_USER_IMAGE_RATE
    for _ in range(GROUP_PICTURE_TRIES):
        user_image, drawn = (sample_scene(rng), None) if users else (None, _create(None, rng, split))
        if any(groups(user_image if drawn is None else drawn[4])):      # {}, every shape, is falsy
            break
    return user_image, drawn


def _group_edit(current, rng, split):
    """An edit of one of `PLURAL_KINDS` that fits `current`, each kind first as often; else any edit
    that fits, else a question. A kind is drawn a few times (its builder picks one group at random,
    and "remove all the …" does not fit the group of every shape: it would empty the canvas) and the
    draw touching the most shapes is kept."""
    for kind in rng.sample(PLURAL_KINDS, len(PLURAL_KINDS)):
        draws = [g for g in (_edit(current, rng, split, kind=kind) for _ in range(GROUP_EDIT_TRIES)) if g is not None]
        if draws:
            return max(draws, key=_edit_size)             # the first of the largest
    return _edit(current, rng, split) or _ask(current, rng, split)


def _edit_size(got) -> int:
    """How many shapes an edit exchange touches (its record's target: one index or several)."""
    target = got[2]["edit"].get("target")
    return len(target) if isinstance(target, (list, tuple)) else 1


def sample_group(seed: int, split: str = "train") -> Conversation:
    """A group conversation: a picture with shapes that share a shape or a colour, then 1-3 edits of
    several shapes at once or of size, some followed by a question about what changed (`GROUP_…`)."""
    rng = stream(split, seed, "group")
    user_image, drawn = _group_picture(rng, split)
    turns = [] if drawn is None else _exchange_turns(drawn, None, rng, split)
    current, shown = user_image if drawn is None else drawn[4], user_image
    for _ in range(rng.randint(*GROUP_EDITS)):
        got = _group_edit(current, rng, split)
        turns += _exchange_turns(got, shown, rng, split)
        shown, current = None, current if got[4] is None else got[4]
        if "edit" in got[2] and rng.random() < GROUP_ASK_RATE:
            asked = _ask_after(current, got[2]["edit"], rng, split) or _ask(current, rng, split)
            turns += _exchange_turns(asked, None, rng, split)
    return Conversation(id=f"{split}-group-{seed}", split=split, seed=seed, turns=turns)


def _quiz_picture(rng, split):
    """A quiz's picture exchange: (user picture or None, the exchange that shows or draws it)."""
    if rng.random() < QUIZ_USER_IMAGE_RATE:
        scene = _sign_scene(rng) if rng.random() < QUIZ_SIGN_RATE else sample_scene(rng)
        return scene, None
    return None, (_sign_create(None, rng, split) if rng.random() < QUIZ_SIGN_RATE else _create(None, rng, split))


# a yes/no question's evidence answers another kind: "is there a red circle?" -> "two, so yes"
# answers "how many red circles?", and "is the star blue?" -> "it's brown — blue? no" its colour; a count
# of none answers "where are the red circles?" ("I see none"), so the two share a key too
SAME_QUESTION = {"exists": "count", "locate": "count", "check_color": "color"}


def _asked(meta: dict) -> tuple:
    """What a question asks, whatever its words (`meta`: an ask's user meta): its kind and subject,
    the same for two questions one of whose answers gives the other's away."""
    kind = SAME_QUESTION.get(meta["question"], meta["question"])
    subject = {k: v for k, v in meta["about"].items() if k != "ref" and not (kind == "color" and k == "color")}
    return kind, tuple(sorted((k, repr(v)) for k, v in subject.items()))


def _quiz_questions(current, rng, split, drill_rate: float = DRILL_RATE, drill_kinds=None) -> list:
    """1-4 different questions about one picture: the first about its word half the time, when it
    has one, and no later one, so no answer is in an earlier reply (one that names many things — a
    description, "where are the squares?" — is the last); or, for some pictures with two or more
    shapes (`drill_rate`), after any word question, a drill (`DRILL_SHARES`, only the kinds in
    `drill_kinds` when given)."""
    asked, out = set(), []
    drill = len(current.objects) >= 2 and rng.random() < drill_rate
    for j in range(rng.randint(*QUIZ_QUESTIONS)):
        if j == 0 and current.sign is not None and rng.random() < QUIZ_WORD_FIRST_RATE:
            got = _ask(current, rng, split, kind="word")
        elif drill:
            break
        else:
            draws = (_ask(current, rng, split) for _ in range(QUIZ_TRIES))
            got = next((g for g in draws if g is not None and g[2]["question"] != "word"
                        and _asked(g[2]) not in asked), None)
        if got is not None:
            asked.add(_asked(got[2]))
            out.append(got)
            if got[2]["question"] in MANY_THINGS_QUESTIONS:
                break
    if drill:
        shares = {k: w for k, w in DRILL_SHARES.items() if drill_kinds is None or k in drill_kinds}
        kind = rng.choices(list(shares), weights=list(shares.values()))[0]
        out += DRILLS[kind](current, rng, split)
    return out


def _color_check_drill(current, rng, split) -> list:
    """Colour checks in pairs about up to `COLOR_CHECK_DRILL_SHAPES` shapes: each asked with its own
    colour and with another, all of them in a random order, so where a check comes says nothing of
    its verdict (their user meta carries "drill")."""
    targets = rng.sample(range(len(current.objects)), min(len(current.objects), COLOR_CHECK_DRILL_SHAPES))
    checks = [color_check(current, target, truth, rng, split) for target in targets for truth in (True, False)]
    rng.shuffle(checks)
    return [_asking(q, drill=True) for q in checks if q is not None]


def _subject_sets(current, rng, every: bool = True) -> tuple[dict, list]:
    """The different sets of `current`'s shapes a question can name — every shape (unless not
    `every`), a shape, a colour, a shape in a colour — each with the (shape, colour) that names it
    (one wording per set, at random), and the things not there (a shape, or a colour neither a shape
    nor the sign has)."""
    def counted(shape, color):      # the shapes "how many {shape|color}?" counts
        return tuple(objects_matching(current, {k: v for k, v in (("shape", shape), ("color", color)) if v}))
    objs = current.objects
    subjects = ([(None, None)] if every else []) + [(o.shape, None) for o in objs] + [(None, o.color) for o in objs] + \
        [(o.shape, o.color) for o in objs]
    by_set = {}
    for shape, color in rng.sample(subjects, len(subjects)):
        by_set.setdefault(counted(shape, color), (shape, color))
    sign_colors = set() if current.sign is None else {current.sign.color, current.sign.plaque}
    absent = [(s, None) for s in SHAPES if not counted(s, None)] + \
        [(None, c) for c in OBJECT_COLORS if not counted(None, c) and c not in sign_colors]
    return by_set, absent


def _count_drill(current, rng, split) -> list:
    """Counts of up to `COUNT_DRILL_QUESTIONS` things: each of a different set of the picture's shapes
    and one thing not there, all in a random order, each asked "how many?" or "is there?" (their
    user meta carries "drill")."""
    by_set, absent = _subject_sets(current, rng)
    picked = rng.sample(list(by_set.values()), min(len(by_set), COUNT_DRILL_QUESTIONS - 1))
    picked += [rng.choice(absent)] if absent else []
    rng.shuffle(picked)
    asked = [exists_question if rng.random() < EXISTS_IN_COUNT_DRILL_RATE else count_question for _ in picked]
    return [_asking(ask(current, shape, color, rng, split), drill=True) for ask, (shape, color) in zip(asked, picked)]


def _cell_drill(current, rng, split) -> list:
    """Where up to `CELL_DRILL_SHAPES` shapes are, each asked by its place ("where is the red circle?")
    or by its cell ("what is in the top left?"; where it cannot be told apart but by its cell), and
    what is in one empty cell, all in a random order (their user meta carries "drill")."""
    objs = current.objects
    targets = rng.sample(range(len(objs)), min(len(objs), CELL_DRILL_SHAPES))
    questions = []
    for i in targets:
        by_place = position_question(current, i, rng, split) if rng.random() < CELL_DRILL_PLACE_RATE else None
        questions.append(by_place or what_at_question(current, objs[i].cell, rng, split))
    empty = current.free_cells()
    questions += [what_at_question(current, rng.choice(empty), rng, split)] if empty else []
    rng.shuffle(questions)
    return [_asking(q, drill=True) for q in questions]


def _locate_drill(current, rng, split) -> list:
    """"where are the …?" about up to `LOCATE_DRILL_SETS` sets of the picture's shapes that share no
    shape, and about one thing not there, in a random order (their user meta carries "drill"). Never
    "where are the shapes?": its answer names every shape, so a later "where are the stars?" would
    be answered by reading that reply ("I see none"), not the picture."""
    by_set, absent = _subject_sets(current, rng, every=False)
    picked, named = [], set()
    for members, subject in by_set.items():
        if len(picked) < LOCATE_DRILL_SETS and not named & set(members):
            picked.append(subject)
            named |= set(members)
    picked += [rng.choice(absent)] if absent else []
    rng.shuffle(picked)
    return [_asking(locate_question(current, shape, color, rng, split), drill=True) for shape, color in picked]


DRILLS = {"color_check": _color_check_drill, "count": _count_drill, "cells": _cell_drill, "locate": _locate_drill}
assert tuple(DRILLS) == tuple(DRILL_SHARES)


def sample_quiz(seed: int, split: str = "train", drill_rate: float = DRILL_RATE, drill_kinds=None) -> Conversation:
    """A quiz: pictures (mostly the user's), each followed by questions about it (`QUIZ_…`); pictures
    with two or more shapes are drills (`DRILL_SHARES`, of `drill_kinds` only when given) this often."""
    rng = stream(split, seed, "quiz")
    turns: list[Turn] = []
    for _ in range(rng.randint(*QUIZ_PICTURES)):
        user_image, drawn = _quiz_picture(rng, split)
        current = user_image if user_image is not None else drawn[4]
        if drawn is not None:
            turns += _exchange_turns(drawn, None, rng, split)
        for j, asked in enumerate(_quiz_questions(current, rng, split, drill_rate, drill_kinds)):
            turns += _exchange_turns(asked, user_image if j == 0 else None, rng, split)
    return Conversation(id=f"{split}-quiz-{seed}", split=split, seed=seed, turns=turns)


# A told scene (`sample_conversation(told_rate=…)`): the user describes a picture in words — the
# words `describe` gives it, in a frame ("picture this: a red star at the top and … on a white
# background.") — and asks a quiz's questions about it (`_quiz_questions`, drills included), with no
# picture anywhere in the conversation, 1-2 scenes one after the other. The answers can only be read
# from the words. That is the step a reply that first describes its picture and then answers needs:
# given its own right description, the model still answered from the picture's codes, no better
# than before (docs/RESULTS.md, "Looking at the whole picture before answering").
TOLD_SCENES = (1, 2)
TOLD = family("told_scene", ("suppose there's {scene}.", "my picture has {scene}.",
    
    "picture this: {scene}.", "imagine a picture with {scene}.", "say I drew {scene}.",
    "here's a scene: {scene}.", "think of a picture with {scene}.", "I have a drawing with {scene}.",
    "let's say the picture shows {scene}.", "imagine {scene}.", "my drawing shows {scene}."), (
    "let's say my sketch has {scene}.", "say this image is showing {scene}."))


def sample_told(seed: int, split: str = "train", drill_rate: float = DRILL_RATE, drill_kinds=None) -> Conversation:
    """A told scene: a picture described in the user's words, then questions about it (`TOLD`); each
    question's user meta carries the scene it is about as "told" (a scene dict)."""
    rng = stream(split, seed, "told")
    turns: list[Turn] = []
    for _ in range(rng.randint(*TOLD_SCENES)):
        scene = _sign_scene(rng) if rng.random() < QUIZ_SIGN_RATE else sample_scene(rng)
        told = as_typed(TOLD.pick(rng, split).format(scene=describe(scene)), rng)
        for j, asked in enumerate(_quiz_questions(scene, rng, split, drill_rate, drill_kinds)):
            kind, text, meta, reply, image = asked
            text = f"{told} {text}" if j == 0 else text          # the scene is told with its first question
            turns += _exchange_turns((kind, text, {**meta, "told": scene.to_dict()}, reply, image), None, rng, split)
    return Conversation(id=f"{split}-told-{seed}", split=split, seed=seed, turns=turns)


# A question asked before there is any picture ("what does the sign say?" as the first message) has
# nothing to read: the reply says so instead of answering about a picture that is not there. A told
# scene's questions are about the scene described, so only a question with neither gets this reply.
NO_PICTURE_REPLY = "There's no picture yet to look at. Tell me what to draw and I'll make one."
NO_PICTURE_SIGN_RATE = 0.3           # the scene the question is drawn from has a sign this often


def asked_before_a_picture(conversation: Conversation, rng: random.Random, split: str) -> Conversation:
    """`conversation` after an opening question about things no picture shows yet (a question asked
    of a random scene), answered with NO_PICTURE_REPLY."""
    scene = _sign_scene(rng) if rng.random() < NO_PICTURE_SIGN_RATE else sample_scene(rng)
    _, text, meta, _, _ = _ask(scene, rng, split)      # some kind fits every scene ("describe the picture")
    meta = {**meta, "answer": NO_PICTURE_REPLY, "no_picture": True}
    opening = [Turn("user", _user_turn_text(text, None, rng, split), None, "ask", meta),
               Turn("assistant", NO_PICTURE_REPLY, None, "ask")]
    return replace(conversation, turns=opening + list(conversation.turns))


# Small talk: a greeting, thanks or praise, a goodbye. Each gets one short reply and no picture, and
# the picture being talked about stays the latest one, so the next edit or question is about it. A
# greeting may also open the first request ("hi! draw a red circle"). People type these first and
# often; a model that never saw them reads "hello" as a request and draws something. No phrasing
# says "love": trained on "love it", the model answered "I'd love to see a square" as praise.
SMALL_TALK_TASK = "chat"
SMALL_TALK_REPLIES = {
    "greeting": "Hi! Tell me what to draw and I'll make it.",
    "praise": "Glad you like it! Tell me if you'd like anything changed.",
    "farewell": "Bye! Come back any time you want a picture.",
}
SMALL_TALK_WEIGHTS = {"greeting": 0.4, "praise": 0.4, "farewell": 0.2}
GREETING_WITH_REQUEST_RATE = 0.5     # a greeting opens the first request instead of its own message
SMALL_TALK = {
    "greeting": family("greeting", ("hi", "hello", "hey", "hi there", "hello there", "hey there", "hiya", "howdy",
        "hi!", "hello!", "good morning", "good evening", "hi, how are you?", "hello, how's it going?",
        "hey, what's up?", "hi! nice to meet you", "greetings", "yo"), (
        "hey, good to see you", "hey there, how are things?", "hey there, good to see you")),
    "praise": family("praise", ("thanks", "thank you", "thanks!", "thank you so much", "thanks a lot", "nice",
        "nice!", "very nice", "wow", "wow, lovely", "lovely", "perfect", "perfect, thanks", "great", "great job",
        "awesome", "cool", "cool, thanks", "so cool", "that's perfect", "looks good", "looks great", "beautiful",
        "amazing", "good job", "that's great", "well done", "excellent", "neat", "sweet", "nice work",
        "that looks nice", "wow, thank you"), (
        "that is really nice", "great, I like it", "that is so good", "really nice, thank you")),
    "farewell": family("farewell", ("bye", "goodbye", "bye!", "bye for now", "see you later", "see ya",
        "that's all", "that's all, thanks", "I'm done", "all done", "good night", "that's it",
        "nothing else, thanks", "we're done here", "ok bye"), (
        "that is all for now", "so that is it", "that is everything for now", "we are all set")),
}


def small_talk(kind: str, rng: random.Random, split: str) -> list[Turn]:
    """One small-talk exchange of `kind` ("greeting", "praise", "farewell"): its message and reply."""
    meta = {"small_talk": kind, "answer": SMALL_TALK_REPLIES[kind]}
    text = as_typed(SMALL_TALK[kind].pick(rng, split), rng)
    return [Turn("user", text, None, SMALL_TALK_TASK, meta),
            Turn("assistant", SMALL_TALK_REPLIES[kind], None, SMALL_TALK_TASK)]


def _greeted_request(greeting: str, request: str, rng: random.Random) -> str:
    """'hi! draw a red circle': a greeting, then the request as it would be typed after it."""
    if request[:1].isupper() and request[1:2].islower():
        request = request[0].lower() + request[1:]
    mark = "" if greeting[-1:] in "!?." else rng.choice(("!", ",", "."))
    return f"{greeting}{mark} {request}"


def with_small_talk(conversation: Conversation, rng: random.Random, split: str) -> Conversation:
    """`conversation` with one small-talk exchange (`small_talk`): a greeting first (or opening the first
    request), thanks or praise after one of its pictures, or a goodbye at the end."""
    turns = list(conversation.turns)
    kind = rng.choices(list(SMALL_TALK_WEIGHTS), weights=list(SMALL_TALK_WEIGHTS.values()))[0]
    pictures = [i for i, t in enumerate(turns) if t.role == "assistant" and t.image is not None]
    if kind == "praise" and not pictures:
        kind = "greeting"
    if kind == "greeting":
        first = turns[0]
        if first.image is None and "no_picture" not in first.meta and rng.random() < GREETING_WITH_REQUEST_RATE:
            greeting = as_typed(SMALL_TALK["greeting"].pick(rng, split), rng)
            turns[0] = replace(first, text=_greeted_request(greeting, first.text, rng))
        else:
            turns = small_talk(kind, rng, split) + turns
    elif kind == "praise":
        at = rng.choice(pictures) + 1
        turns = turns[:at] + small_talk(kind, rng, split) + turns[at:]
    else:
        turns += small_talk(kind, rng, split)
    return replace(conversation, turns=turns)


def sample_conversation(seed: int, split: str = "train", sign_rate: float = 0.0,
                        chain_rate: float = 0.0, quiz_rate: float = 0.0,
                        drill_rate: float = DRILL_RATE, group_rate: float = 0.0, drill_kinds=None,
                        told_rate: float = 0.0, walk_rate: float = 0.0, typo_rate: float = 0.0,
                        no_picture_rate: float = 0.0, small_talk_rate: float = 0.0) -> Conversation:
    """The conversation of `seed` (`_sample_conversation`); with `no_picture_rate`, that share open with
    a question asked before any picture (`asked_before_a_picture`); with `small_talk_rate`, that share
    hold a greeting, thanks or a goodbye (`with_small_talk`); with `walk_rate`, that share have
    every count, "is there …?" and "where are the …?" answer walked through the picture's shapes first
    (`walked`); with `typo_rate`, that share of user messages have a typing slip in one word
    (`typos.with_typos`)."""
    conversation = _sample_conversation(seed, split, sign_rate, chain_rate, quiz_rate, drill_rate, group_rate,
                                        drill_kinds, told_rate)
    if no_picture_rate > 0 and stream(split, seed, "no_picture_mix").random() < no_picture_rate:
        conversation = asked_before_a_picture(conversation, stream(split, seed, "no_picture"), split)
    if small_talk_rate > 0 and stream(split, seed, "small_talk_mix").random() < small_talk_rate:
        conversation = with_small_talk(conversation, stream(split, seed, "small_talk"), split)
    if walk_rate > 0 and stream(split, seed, "walk_mix").random() < walk_rate:
        conversation = walked(conversation)
    if typo_rate > 0:
        conversation = with_typos(conversation, stream(split, seed, "typos"), typo_rate)
    return conversation


def walked(conversation: Conversation) -> Conversation:
    """`conversation` with each count, "is there …?" and "where are the …?" answer after its walk
    (`questions.walked_answer`) through the scene it asks about (the told scene, else the latest picture)
    when no later question asks about that scene: a walk names every shape where it is, so a later
    answer could be copied from it instead of read."""
    turns, current = list(conversation.turns), None
    asked = []                                   # (turn index, the scene its question is about)
    for i, t in enumerate(turns):
        current = t.image if t.image is not None else current
        if t.role == "user" and "question" in t.meta and not t.meta.get("no_picture") and i + 1 < len(turns):
            asked.append((i, Scene.from_dict(t.meta["told"]) if "told" in t.meta else current))
    for k, (i, scene) in enumerate(asked):
        t = turns[i]
        later = any(other == scene for _, other in asked[k + 1:])
        if scene is None or later or turns[i + 1].text != t.meta["answer"]:
            continue
        turns[i + 1] = replace(turns[i + 1], text=walked_answer(scene, t.meta["question"], t.meta["about"],
                                                                t.meta["answer"]))
    return replace(conversation, turns=turns)


def _sample_conversation(seed: int, split: str, sign_rate: float, chain_rate: float, quiz_rate: float,
                         drill_rate: float, group_rate: float, drill_kinds, told_rate: float) -> Conversation:
    """The conversation of `seed`; with `told_rate`, that share are told scenes (`sample_told`: no
    picture, so ~125 tokens each), with `sign_rate`, that share of conversations are about a sign,
    with `chain_rate` that share of the others are edit chains (`sample_chain`), with `quiz_rate` that share of the
    others are quizzes (`sample_quiz`, whose pictures with two or more shapes are drills with
    `drill_rate`, of `drill_kinds` only when given), with `group_rate` that share of the rest are group conversations
    (`sample_group`); the same seed gives the same conversation whenever it is none of these."""
    if told_rate > 0 and stream(split, seed, "told_mix").random() < told_rate:
        return sample_told(seed, split, drill_rate, drill_kinds)
    if chain_rate > 0 and stream(split, seed, "chain_mix").random() < chain_rate:
        return sample_chain(seed, split)
    if quiz_rate > 0 and stream(split, seed, "quiz_mix").random() < quiz_rate:
        return sample_quiz(seed, split, drill_rate, drill_kinds)
    if group_rate > 0 and stream(split, seed, "group_mix").random() < group_rate:
        return sample_group(seed, split)
    rng = stream(split, seed, "conversation")
    signs = sign_rate > 0 and stream(split, seed, "sign_mix").random() < sign_rate
    turns: list[Turn] = []
    current: Scene | None = None
    for _ in range(rng.randint(MIN_EXCHANGES, MAX_EXCHANGES)):
        weights = FIRST_WEIGHTS if current is None else NEXT_WEIGHTS
        task = rng.choices(list(weights), weights=list(weights.values()))[0]
        user_image = None
        if task == "user_image":
            user_image = current = _sign_scene(rng) if signs else sample_scene(rng)
            task = "edit" if rng.random() < USER_IMAGE_EDIT_RATE else "ask"
        # an edit or variation that does not fit this picture becomes a question (one always fits)
        exchange = _sign_exchange if signs else (lambda t, c, r, s: EXCHANGES[t](c, r, s))
        got = exchange(task, current, rng, split) or _ask(current, rng, split)
        task, text, meta, reply, image = got
        text = _user_turn_text(text, user_image, rng, split)
        turns.append(Turn("user", text, user_image, task, meta))
        turns.append(Turn("assistant", reply, image, task))
        current = image if image is not None else current
    return Conversation(id=f"{split}-{seed}", split=split, seed=seed, turns=turns)
