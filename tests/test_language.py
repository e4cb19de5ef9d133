"""The world's words agree with its pictures: prompts/specs, edits, questions, referring expressions,
held-out phrasings, and the renderer's determinism."""
import copy
import random
import re
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmgen.world import render, sample_scene
from mmgen.world.edits import EDIT_KINDS, sample_edit
from mmgen.world.language import (COLOR_SYNONYMS, FAMILIES, NUMBER_WORDS, SHAPE_SYNONYMS, canonical_location, describe,
                                  objects_matching, read_description, refer, stream, template_regex)
from mmgen.world.prompts import CATEGORIES, prompt_for, sample_prompt, spec_matches
from mmgen.world.questions import QUESTION_KINDS, sample_question, verdict
from mmgen.world.scene import CELLS, DEFAULT_BACKGROUND, DEFAULT_SIZE, Obj, Scene, Sign, validate

SPLITS = ("train", "eval")


def color_words(c):
    return (c,) + COLOR_SYNONYMS.get(c, ())


def shape_words(s):
    words = (s,) + SHAPE_SYNONYMS.get(s, ())
    return words + tuple(w + "s" for w in words) + tuple(w + "es" for w in words)


# --- create prompts ------------------------------------------------------------------------------
@settings(max_examples=120, deadline=None)
@given(seed=st.integers(0, 10**8), category=st.sampled_from(CATEGORIES), split=st.sampled_from(SPLITS))
def test_prompt_scene_is_valid_and_matches_its_own_spec(seed, category, split):
    p = prompt_for(seed, category, split)
    validate(p.scene)
    checks = spec_matches(p.spec, p.scene, defaults=True)
    assert all(checks.values()), (p.text, p.spec, p.scene.to_dict(), checks)
    assert p.spec["category"] == category
    if p.spec["background"] is None:
        assert p.scene.background == DEFAULT_BACKGROUND
    # the words say what the spec says
    text = p.text.lower()
    for g in p.spec["objects"]:
        if g["color"]:
            assert any(w in text for w in color_words(g["color"])), (p.text, g)
        if g["shape"]:
            assert any(w in text for w in shape_words(g["shape"])), (p.text, g)
        if g["count"] > 1:
            assert NUMBER_WORDS[g["count"]] in text or str(g["count"]) in text, (p.text, g)
    if p.spec["sign"]:
        assert p.spec["sign"]["word"] in p.text          # the word exactly as drawn
    if p.spec["background"]:
        assert any(w in text for w in color_words(p.spec["background"])), p.text


def test_categories_ask_what_they_name():
    for i in range(40):
        assert prompt_for(i, "single_object").spec["n_objects"] == 1
        assert 2 <= prompt_for(i, "counting").spec["objects"][0]["count"] <= 4
        ca = prompt_for(i, "color_attribution").spec["objects"]
        assert len(ca) == 2 and all(g["color"] and g["shape"] for g in ca)
        assert ca[0]["color"] != ca[1]["color"] and ca[0]["shape"] != ca[1]["shape"]
        assert prompt_for(i, "sign").spec["sign"]["word"]
        pos = prompt_for(i, "position").spec
        assert pos["relations"] or pos["objects"][0]["cell"]


def _scene_dict(objs, background="white", sign=None):
    return {"background": background, "objects": [dict(shape=s, color=c, size=z, cell=cell) for s, c, z, cell in objs],
            "sign": sign}


def test_spec_matches_catches_what_is_wrong():
    spec = {"category": "position", "n_objects": 2, "background": None, "sign": None,
            "objects": [{"shape": "circle", "color": "red", "size": None, "cell": None, "count": 1},
                        {"shape": "star", "color": "green", "size": None, "cell": None, "count": 1}],
            "relations": [{"a": 0, "relation": "left of", "b": 1}]}
    good = _scene_dict([("circle", "red", "medium", "left"), ("star", "green", "medium", "top right")])
    assert all(spec_matches(spec, good).values())
    swapped = _scene_dict([("circle", "red", "medium", "right"), ("star", "green", "medium", "left")])
    got = spec_matches(spec, swapped)
    assert not got["relation_0"] and not got["objects"] and got["object_0"] and got["object_1"]
    wrong_color = _scene_dict([("circle", "blue", "medium", "left"), ("star", "green", "medium", "right")])
    got = spec_matches(spec, wrong_color)
    assert not got["object_0"] and not got["objects"] and got["count"]
    extra = good["objects"] + [dict(shape="square", color="red", size="medium", cell="bottom")]
    assert not spec_matches(spec, {**good, "objects": extra})["count"]
    # defaults: unsaid background and size must be white / medium only when asked to check them
    big_on_black = _scene_dict([("circle", "red", "large", "left"), ("star", "green", "medium", "right")], "black")
    assert all(spec_matches(spec, big_on_black).values())
    got = spec_matches(spec, big_on_black, defaults=True)
    assert not got["background"] and not got["object_0"]


def test_spec_matches_counts_and_signs():
    spec = {"category": "counting", "n_objects": 3, "background": "black", "relations": [],
            "objects": [{"shape": "square", "color": "blue", "size": None, "cell": None, "count": 3}],
            "sign": {"word": "OPEN", "color": "red", "plaque": None, "band": "top"}}
    sign = {"word": "OPEN", "color": "red", "plaque": "white", "band": "top"}
    three = _scene_dict([("square", "blue", "small", c) for c in ("left", "center", "right")], "black", sign)
    assert all(spec_matches(spec, three).values())
    two_and_red = copy.deepcopy(three)
    two_and_red["objects"][2]["color"] = "red"
    got = spec_matches(spec, two_and_red)
    assert not got["object_0"] and got["count"]
    misspelt = {**three, "sign": {**sign, "word": "OPEM"}}
    assert not spec_matches(spec, misspelt)["sign_word"]
    assert not spec_matches(spec, {**three, "sign": None})["sign"]


def test_unsaid_attributes_take_defaults_or_vary():
    sizes, colors = set(), set()
    for i in range(200):
        p = prompt_for(i, "single_object", "train")
        sizes.add(p.scene.objects[0].size)
        colors.add(p.scene.objects[0].color)
    assert sizes == {DEFAULT_SIZE}                # "a circle" is medium
    assert len(colors) >= 6                       # … of any colour


# --- referring expressions -------------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 10**8))
def test_references_pick_out_exactly_their_target(seed):
    scene, rng = sample_scene(seed), random.Random(seed)
    for i in range(len(scene.objects)):
        for avoid in ((), ("color",), ("shape",), ("cell",)):
            ref = refer(scene, i, rng, avoid=avoid)
            if ref is None:
                continue
            assert not set(ref.attrs) & set(avoid)
            if ref.text == "it":
                assert len(scene.objects) == 1 and scene.sign is None
            else:
                assert objects_matching(scene, ref.attrs) == [i], (ref, scene.to_dict())


def test_ambiguous_references_are_never_used():
    two_circles = Scene(objects=(Obj("circle", "red", cell="left"), Obj("circle", "blue", cell="right")))
    texts = {refer(two_circles, 0, random.Random(k)).text for k in range(60)}
    assert "the circle" not in texts and "it" not in texts
    assert "the red circle" in texts
    # "the red one" could mean the red word, so it is not used when the sign is red
    signed = Scene(objects=(Obj("circle", "red", cell="left"),), sign=Sign("HI", "red", band="top"))
    assert all(refer(signed, 0, random.Random(k)).text != "the red one" for k in range(60))


# --- edits ------------------------------------------------------------------------------------------
def apply_record(d: dict, r: dict) -> dict:
    """What an edit record says happened, applied to a scene's to_dict(), independently of edits.py."""
    d = copy.deepcopy(d)
    kind, t = r["kind"], r["target"]
    if kind in ("recolor", "move", "resize", "plaque", "move_sign"):
        part = d["sign"] if t == "sign" else d["objects"][t]
        assert part[r["attribute"]] == r["before"]
        part[r["attribute"]] = r["after"]
    elif kind == "add":
        assert t == len(d["objects"])
        d["objects"].append(r["after"])
    elif kind in ("remove", "remove_one"):
        assert d["objects"].pop(t) == r["before"]
    elif kind == "add_many":
        assert t == list(range(len(d["objects"]), len(d["objects"]) + len(r["after"])))
        d["objects"] += r["after"]
    elif kind == "recolor_group":
        assert [d["objects"][i]["color"] for i in t] == r["before"]
        for i in t:
            d["objects"][i]["color"] = r["after"]
    elif kind == "remove_group":
        assert [d["objects"][i] for i in t] == r["before"]
        d["objects"] = [o for i, o in enumerate(d["objects"]) if i not in t]
    elif kind == "background":
        assert d["background"] == r["before"]
        d["background"] = r["after"]
    elif kind == "word":
        assert d["sign"]["word"] == r["before"]
        d["sign"]["word"] = r["after"]
    elif kind == "add_sign":
        assert d["sign"] is None
        d["sign"] = r["after"]
    elif kind == "remove_sign":
        assert d["sign"] == r["before"]
        d["sign"] = None
    return d


def check_edit(old: Scene, e) -> None:
    r = e.record
    validate(e.scene)
    assert r["before"] != r["after"]
    assert apply_record(old.to_dict(), r) == e.scene.to_dict(), (e.text, r)
    # every object the edit did not touch keeps its exact geometry (offset and side too)
    kind, t = r["kind"], r["target"]
    if kind in ("add", "add_many"):
        assert e.scene.objects[:len(old.objects)] == old.objects
    elif kind in ("remove", "remove_one"):
        assert e.scene.objects == old.objects[:t] + old.objects[t + 1:]
    elif kind == "remove_group":
        assert e.scene.objects == tuple(o for i, o in enumerate(old.objects) if i not in t)
    else:
        assert len(e.scene.objects) == len(old.objects)
        for j, (a, b) in enumerate(zip(old.objects, e.scene.objects)):
            if kind == "recolor_group":
                assert b == (replace(a, color=r["after"]) if j in t else a)
            elif j != t:
                assert a == b                     # Obj equality includes offset and side
            elif kind == "recolor":
                assert replace(a, color=b.color) == b
    if r["ref"]:
        assert r["ref"] in e.text.lower() or r["ref"] in e.text
    if kind == "word":
        assert r["after"] in e.text
    if kind == "recolor":
        assert any(w in e.text for w in color_words(r["after"]))
    if r["asked"] and kind == "add":
        assert all(r["after"][k] == v for k, v in r["asked"].items() if k != "count" and v is not None)
        if r["asked"]["size"] is None:
            assert r["after"]["size"] == DEFAULT_SIZE
    if kind in ("add", "add_many") and (r["asked"] or {}).get("cell") is None:
        # a place the request leaves open is the first free cells in reading order (edits.OPEN_PLACE)
        added = e.scene.objects[len(old.objects):]
        assert [o.cell for o in added] == old.free_cells()[:len(added)], (e.text, old.free_cells())


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 10**8), split=st.sampled_from(SPLITS))
def test_edits_change_exactly_what_the_record_says(seed, split):
    scene, rng = sample_scene(seed), random.Random(seed)
    for kind in EDIT_KINDS:
        e = sample_edit(scene, rng, split, kind=kind)
        if e is not None:
            assert e.record["kind"] == kind
            check_edit(scene, e)


def check_group_edit(old: Scene, e) -> None:
    """A group edit touches every object its words name and nothing else (recomputed from the words'
    attributes, not from the record's indices)."""
    r = e.record
    attrs = {k: v for k, v in (r["asked"] or {}).items() if k != "members"}
    named = [i for i, o in enumerate(old.objects) if all(getattr(o, k) == v for k, v in attrs.items())]
    if r["kind"] == "recolor_group":
        assert len(named) >= 2 and r["target"] == named
        assert all(o.color == r["after"] for i, o in enumerate(e.scene.objects) if i in named)
        assert sum(o.color == r["after"] for o in e.scene.objects) >= len(named)
    elif r["kind"] == "remove_group":
        assert r["target"] == named and len(e.scene.objects) == len(old.objects) - len(named)
        assert not [o for o in e.scene.objects if all(getattr(o, k) == v for k, v in attrs.items())] or not attrs
    elif r["kind"] == "remove_one":
        assert r["asked"]["members"] == named and r["target"] in named
        assert len(e.scene.objects) == len(old.objects) - 1
    elif r["kind"] == "add_many":
        new = e.scene.objects[len(old.objects):]
        assert len(new) == r["asked"]["count"] in (2, 3)
        assert all(getattr(o, k) == v for o in new for k, v in r["asked"].items() if k in ("shape", "color", "size")
                   and v is not None)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 10**8), split=st.sampled_from(SPLITS))
def test_group_edits_change_every_named_object_and_nothing_else(seed, split):
    scene, rng = sample_scene(seed), random.Random(seed)
    for kind in ("add_many", "recolor_group", "remove_group", "remove_one"):
        e = sample_edit(scene, rng, split, kind=kind)
        if e is not None:
            check_edit(scene, e)
            check_group_edit(scene, e)


def test_group_words_read_as_english():
    from mmgen.world.edits import sample_edit as edit
    for seed in range(300):
        e = edit(sample_scene(seed), random.Random(seed), kind="remove_one")
        if e is not None:
            assert not re.search(r"one of (every|each|all|both)\b", e.text, re.I), e.text
    wrong = r"\ball two\b|\b(all|every|each|both|them all)\b[^?.!]* all be\b|^them (should|can)\b|could them\b"
    for split in SPLITS:
        for seed in range(600):
            for kind in ("recolor_group", "remove_group", "remove_one"):
                e = edit(sample_scene(seed), random.Random(seed), split, kind=kind)
                if e is not None:
                    assert not re.search(wrong, e.text, re.I), e.text


def test_in_place_edit_replies_say_where_the_object_is():
    """A recolour, resize or removal of a shape names it in its cell, in the model's canonical words."""
    from mmgen.world.language import canonical_location
    seen = set()
    for seed in range(200):
        scene = sample_scene(seed)
        for kind in ("recolor", "resize", "remove"):
            e = sample_edit(scene, random.Random(seed), kind=kind)
            if e is None or e.record["target"] == "sign":
                continue
            seen.add(kind)
            o = scene.objects[e.record["target"]]
            assert f"{o.shape} {canonical_location(o.cell)}" in e.reply, (e.reply, o)
            if kind != "recolor":
                assert f"the {o.color} {o.shape}" in e.reply
            else:                  # the new colour, not the old one
                assert e.record["after"] in e.reply and f"the {o.color} {o.shape}" not in e.reply
    assert seen == {"recolor", "resize", "remove"}


def test_every_edit_kind_happens():
    seen = set()
    for seed in range(300):
        e = sample_edit(sample_scene(seed), random.Random(seed))
        seen.add(e.record["kind"])
    assert seen == set(EDIT_KINDS)


# --- questions ----------------------------------------------------------------------------------------
def expected_answer(scene: Scene, kind: str, about: dict) -> str | None:
    """Recompute an answer from the scene's dict, independently of questions.py (None: checked apart)."""
    d = scene.to_dict()
    objs, sign = d["objects"], d["sign"]
    counts = ("none", "one", "two", "three", "four")

    def n_matching(shape, color):
        return sum((shape is None or o["shape"] == shape) and (color is None or o["color"] == color) for o in objs)
    t = about.get("target")
    if kind == "color":
        return (sign["color"] if about["part"] == "letters" else sign["plaque"]) if t == "sign" else objs[t]["color"]
    if kind == "shape":
        return objs[t]["shape"]
    if kind == "count":
        return counts[n_matching(about["shape"], about["color"])]
    if kind == "position":
        return sign["band"] if t == "sign" else objs[t]["cell"]
    if kind == "word":
        return sign["word"]
    if kind == "exists":
        if about.get("sign"):
            return "yes" if sign is not None else "no"
        n = n_matching(about["shape"], about["color"])
        return f"{counts[n]}, so {'yes' if n else 'no'}"
    if kind == "check_color":
        actual = objs[t]["color"]
        return f"it's {actual} — {about['color']}? {'yes' if actual == about['color'] else 'no'}"
    if kind == "background":
        return d["background"]
    if kind == "locate":       # every match where it is, in reading order, or "I see none"
        found = sorted((o for o in objs if about["shape"] in (None, o["shape"])
                        and about["color"] in (None, o["color"])), key=lambda o: CELLS.index(o["cell"]))
        named = [f"the {o['color']} {o['shape']} {canonical_location(o['cell'])}" for o in found]
        return "I see none" if not named else named[0] if len(named) == 1 else \
            ", ".join(named[:-1]) + " and " + named[-1]
    return None


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 10**8), split=st.sampled_from(SPLITS))
def test_answers_are_exact(seed, split):
    scene, rng = sample_scene(seed), random.Random(seed)
    for kind in QUESTION_KINDS:
        q = sample_question(scene, rng, split, kind=kind)
        if q is None:
            continue
        want = expected_answer(scene, kind, q.about)
        if want is not None:
            assert q.answer == want, (q, scene.to_dict())
        if "ref" in q.about:
            assert q.about["ref"] in q.text.lower() or q.about["ref"] in q.text
        if kind == "describe":
            assert scene.background in q.answer
            for o in scene.objects:
                assert f"{o.color} {o.shape}" in q.answer
            if scene.sign:
                assert f'"{scene.sign.word}"' in q.answer
        if kind == "what_at":
            o = scene.object_in(q.about["cell"])
            assert q.answer == "nothing" if o is None else q.answer.endswith(f"{o.color} {o.shape}")


def test_answers_are_short_and_deterministic():
    scene = sample_scene(11)
    a = [sample_question(scene, random.Random(k)) for k in range(30)]
    b = [sample_question(scene, random.Random(k)) for k in range(30)]
    assert a == b
    assert all(len(q.answer.split()) <= 2 for q in a
               if q.kind not in ("describe", "what_at", "exists", "check_color", "locate"))
    # yes/no answers about shapes say what was seen, then the verdict: "it's orange — red? no"
    assert all(len(q.answer.split()) <= 5 and verdict(q.answer) in ("yes", "no")
               for q in a if q.kind in ("exists", "check_color"))


def test_verdict_is_the_closing_yes_or_no():
    assert verdict("it's orange, so no") == "no" and verdict("Yes.") == "yes" and verdict("I see two, so yes!") == "yes"
    assert verdict("none") is None and verdict("") is None and verdict("no idea what it is") is None


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 10**8))
def test_a_description_reads_back_as_its_scene(seed):
    scene = sample_scene(seed)
    want = scene.to_dict()
    want["objects"].sort(key=lambda o: CELLS.index(o["cell"]))          # describe's reading order
    assert read_description(f"Sure! Here's {describe(scene)}.") == want
    assert read_description(describe(scene)) == want


def test_text_without_a_whole_description_reads_as_none():
    assert read_description("Sure, here it is.") is None
    assert read_description("a red circle in the top left") is None      # no background: unfinished
    assert read_description("a red blob in the top left on a white background") is None   # not a shape
    got = read_description("a red circle in the top left and a small blue star at the bottom on a cream background")
    assert got == {"background": "cream", "sign": None, "objects": [
        {"shape": "circle", "color": "red", "size": "medium", "cell": "top left"},
        {"shape": "star", "color": "blue", "size": "small", "cell": "bottom"}]}
    assert read_description("an empty gray background") == {"background": "gray", "objects": [], "sign": None}


# --- held-out phrasings ---------------------------------------------------------------------------
def _import_all_families():
    import mmgen.world.conversation  # noqa: F401  (registers its families)
    import mmgen.world.edits  # noqa: F401
    import mmgen.world.questions  # noqa: F401
    return FAMILIES


def test_held_out_phrasings_are_distinct_from_training_ones():
    fams = _import_all_families()
    assert len(fams) >= 25
    train = {t for f in fams.values() for t in f.train}
    for f in fams.values():
        assert f.held_out and f.train
        for t in f.held_out:
            assert t not in train, (f.name, t)
            literal = "".join(p for i, p in enumerate(t.replace("{", "}").split("}")) if i % 2 == 0)
            assert len(literal.strip(" ,.?!:\"")) >= 4, (f.name, t)     # a phrasing, not a bare slot
            # no training phrasing, filled with anything, reads as this held-out one
            for u in train:
                assert not template_regex(t).search(u.replace("{", "").replace("}", "")), (t, u)


def _held_out_regexes():
    return [(f.name, t, template_regex(t)) for f in _import_all_families().values() for t in f.held_out]


def test_held_out_phrasings_never_appear_in_training():
    from mmgen.world.conversation import sample_conversation
    regexes = _held_out_regexes()
    texts = [t.text for s in range(400) for t in sample_conversation(s, "train").turns]
    texts += [t.text for s in range(300) for t in sample_conversation(s, "train", sign_rate=0.3, chain_rate=0.3,
                                                                      quiz_rate=0.5, group_rate=0.5,
                                                                      told_rate=0.3, small_talk_rate=0.5).turns]
    texts += [prompt_for(s, c, "train").text for s in range(200) for c in CATEGORIES]
    for text in texts:
        hits = [(name, t) for name, t, rx in regexes if rx.search(text)]
        assert not hits, (text, hits)


def test_eval_user_turns_use_held_out_phrasings():
    from mmgen.world.conversation import sample_conversation
    regexes = _held_out_regexes()
    used = set()
    for s in range(300):
        for turn in sample_conversation(s, "eval").turns:
            if turn.role != "user":
                continue
            hits = {(name, t) for name, t, rx in regexes if rx.search(turn.text)}
            assert hits, turn.text
            used |= hits
    assert len(used) >= len(regexes) // 2        # the held-out set is really exercised


def test_paraphrases_are_new_phrasings_in_known_words():
    """The paraphrase split: for every family, phrasings that no training phrasing reads as and that
    are not held-out ones, each of whose words a training message uses."""
    from mmgen.eval.vocabulary import training_vocabulary, words_of
    from mmgen.world.paraphrases import PARAPHRASES
    fams = _import_all_families()
    assert set(PARAPHRASES) == set(fams)
    train = {t for f in fams.values() for t in f.train}
    held_out = {t for f in fams.values() for t in f.held_out}
    vocabulary = training_vocabulary()
    slots = lambda t: set(re.findall(r"\{(\w+)\}", t))                          # noqa: E731
    for name, phrasings in PARAPHRASES.items():
        assert len(phrasings) >= 2, name
        for t in phrasings:
            # the slots its callers fill: some training phrasing of the family has exactly these
            assert any(slots(t) == slots(u) for u in fams[name].train), (name, t)
            assert t not in train and t not in held_out, (name, t)
            assert words_of(re.sub(r"\{\w+\}", " ", t)) <= vocabulary, (name, t)
            for u in train:
                assert not template_regex(t).search(u.replace("{", "").replace("}", "")), (t, u)


def test_paraphrase_conversations_use_only_paraphrases_and_known_words():
    from mmgen.eval.vocabulary import unseen_words
    from mmgen.world.conversation import sample_conversation
    from mmgen.world.paraphrases import PARAPHRASES
    regexes = [template_regex(t) for ts in PARAPHRASES.values() for t in ts]
    held_out = [rx for _, _, rx in _held_out_regexes()]
    for s in range(200):
        conv = sample_conversation(s, "paraphrase")
        assert [t.text for t in conv.turns] != [t.text for t in sample_conversation(s, "eval").turns]
        for turn in conv.turns:
            if turn.role == "user":
                assert any(rx.search(turn.text) for rx in regexes), turn.text
                assert not any(rx.search(turn.text) for rx in held_out), turn.text
                assert unseen_words(turn.text) == [], turn.text


def test_every_word_of_a_held_out_phrasing_is_trained():
    """Frames are held out, words are not: a model cannot learn a word it never saw."""
    from mmgen.eval.vocabulary import training_vocabulary, words_of
    from mmgen.world.language import _SLOT
    known = training_vocabulary()
    for f in _import_all_families().values():
        for t in f.held_out:
            assert not words_of(_SLOT.sub(" ", t)) - known, (f.name, t, words_of(_SLOT.sub(" ", t)) - known)


def test_chatter_wraps_the_request_without_changing_it():
    from mmgen.world.language import CLOSERS, OPENERS, QUESTION_CLOSERS, with_chatter
    rng, wrapped = random.Random(0), 0
    for text in ("Draw a red circle", "make the star blue", "what colour is it?", 'the sign should say "OPEN"',
                 "I'd like two squares") * 40:
        out = with_chatter(text, rng)
        opener = next((o for o in OPENERS if out.lower().startswith(o.lower())), "")
        closer = next((c for c in sorted(CLOSERS + QUESTION_CLOSERS, key=len, reverse=True)
                       if out.endswith(c) and len(out) > len(text)), "")
        core = out[len(opener):len(out) - len(closer)]
        assert core.lower() == text.lower(), (text, out)
        assert core[1:] == text[1:]             # only the first letter's case may change ("OPEN" stays)
        wrapped += out != text
    assert 40 < wrapped < 160                   # about 1 − 0.75² of 200


def test_only_training_conversations_get_chatter():
    from mmgen.world.conversation import sample_conversation
    from mmgen.world.language import OPENERS
    def opened(split):
        return sum(t.text.lower().startswith(tuple(o.lower() for o in OPENERS))
                   for s in range(200) for t in sample_conversation(s, split).turns if t.role == "user")
    assert opened("train") > 20
    assert opened("eval") == 0


def test_template_regex_finds_filled_templates():
    assert template_regex("lose {ref}").search("Lose the circle")
    assert not template_regex("lose {ref}").search('a sign that says "CLOSED" please')
    assert template_regex('swap "{old}" for "{word}"').search('swap "OPEN" for "SALE"')
    # a colour slot holds a colour's one or two words, not a clause: a held-out frame is not found
    # inside a training prompt that merely starts and ends like it
    assert template_regex("I want a {bg} backdrop").search("Please, I want a sky blue backdrop!")
    assert not template_regex("I want a {bg} backdrop").search(
        "I want a picture of an orange square with a light blue backdrop")


def test_streams_are_split_apart():
    assert stream("train", 3, "x").random() != stream("eval", 3, "x").random()
    assert stream("train", 3, "x").random() == stream("train", 3, "x").random()
    with pytest.raises(ValueError):
        stream("test", 0)
    with pytest.raises(ValueError):
        stream("train", -1)


# --- renderer ------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**8))
def test_render_is_deterministic(seed):
    p = sample_prompt(random.Random(seed))
    a = render(p.scene).tobytes()
    assert a == render(p.scene).tobytes()
    assert a == render(Scene.from_dict(p.scene.to_json_dict())).tobytes()
