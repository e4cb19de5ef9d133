"""Words for several shapes at once: "the circles", "both squares", "all the red ones", "them".

    g = refer_group(scene, rng)            # None if the scene has no group of two or more
    g.text        # 'all the circles'
    g.members     # (0, 2): indices of every object the words name
    g.attrs       # {"shape": "circle"}; {} for every shape in the picture
    group_plan(scene, g.members)               # 'the red circle in the top left and …': what a reply calls them

A group is every object sharing a shape or a colour, or every object in the picture; it has two
or more members, so "the circles" is never a lone circle. Words that stand for every shape in
the picture with nothing said about them ("them", "both", "all of them") are used only when the
picture has no sign, so that they cannot be read as taking the word in.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from .language import (NUMBER_WORDS, color_word, in_reading_order, join_list, objects_matching, shape_word,
                       the_placed_object)
from .scene import CELLS, Scene


@dataclass(frozen=True)
class GroupRef:
    text: str
    members: tuple[int, ...]
    attrs: dict


def _shape_group_words(shape: str, n: int, rng: random.Random) -> list[str]:
    nouns = shape_word(shape, rng, n)
    words = [f"the {nouns}", f"all the {nouns}", f"all of the {nouns}",
             f"every {shape_word(shape, rng)}", f"each {shape_word(shape, rng)}"]
    # two are "both", never "all two"
    words += [f"both {nouns}", f"the two {nouns}"] if n == 2 else [f"all {NUMBER_WORDS[n]} {nouns}"]
    return words


def _color_group_words(color: str, n: int, rng: random.Random) -> list[str]:
    c = color_word(color, rng)
    words = [f"the {c} ones", f"the {c} shapes", f"all the {c} shapes", f"all the {c} ones",
             f"every {c} shape", f"the {c} things"]
    if n == 2:
        words += [f"both {c} shapes", f"both {c} ones"]
    return words


def _all_words(scene: Scene, n: int) -> list[str]:
    words = ["all the shapes", "both shapes" if n == 2 else f"all {NUMBER_WORDS[n]} shapes", "every shape",
             "all the objects"]
    if scene.sign is None:
        words += ["them", "all of them", "them all", "everything"] + (["both", "both of them"] if n == 2 else [])
    return words


def groups(scene: Scene) -> list[dict]:
    """Every nameable group of 2+ objects, as attribute sets ({} = every object)."""
    out = []
    for key in ("shape", "color"):
        for value in sorted({getattr(o, key) for o in scene.objects}):
            if len(objects_matching(scene, {key: value})) >= 2:
                out.append({key: value})
    if len(scene.objects) >= 2 and {} not in out:
        out.append({})
    return out


def _partitive(words: list[str]) -> list[str]:
    """The words that read after "one of": "the circles", "them" — not "every circle", "both"."""
    return [w for w in words if w.startswith("the ") or w == "them"]


def words_for(scene: Scene, attrs: dict, rng: random.Random, partitive: bool = False) -> str:
    members = objects_matching(scene, attrs)
    n = len(members)
    if "shape" in attrs:
        words = _shape_group_words(attrs["shape"], n, rng)
    elif "color" in attrs:
        words = _color_group_words(attrs["color"], n, rng)
    else:
        words = _all_words(scene, n) + [f"the {NUMBER_WORDS[n]} shapes", "the shapes"]
    return rng.choice(_partitive(words) if partitive else words)


def refer_group(scene: Scene, rng: random.Random, attrs: dict | None = None,
                partitive: bool = False) -> GroupRef | None:
    """Words for a group of the scene (`attrs`, or one picked at random); None if there is none.
    `partitive`: words that follow "one of" ("the circles", "them")."""
    options = groups(scene)
    if attrs is None:
        if not options:
            return None
        attrs = rng.choice(options)
    elif attrs not in options:
        return None
    return GroupRef(words_for(scene, attrs, rng, partitive), tuple(objects_matching(scene, attrs)), dict(attrs))


SUBJECT_PRONOUNS = {"them": "they", "them all": "they all"}


def fill_group(frame: str, group: str, **more: str) -> tuple[str, str]:
    """A phrasing filled with a group's words, and the words as said: a pronoun takes its subject
    form where the group is the subject ("{group} should be red" with "them" → "they should be red")."""
    if frame.startswith("{group}") or "could {group}" in frame:
        group = SUBJECT_PRONOUNS.get(group, group)
    return frame.format(group=group, **more), group


def group_plan(scene: Scene, members: tuple[int, ...]) -> str:
    """'the red square in the top left and the red square on the right': a group edit's reply names
    every member where it is, in reading order, as a create's plan does — the picture then follows
    words that say which cells change, not only how many."""
    return join_list([the_placed_object(o) for o in in_reading_order(scene.objects[i] for i in members)])


def last_in_reading_order(scene: Scene, members: tuple[int, ...]) -> int:
    """The member furthest along in reading order: the one "remove one of them" takes away."""
    return max(members, key=lambda i: CELLS.index(scene.objects[i].cell))
