"""Conversations: deterministic, well-formed, consistent turn to turn; the JSONL export round-trips."""
import json
import re
from collections import Counter
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_language import apply_record, check_edit, expected_answer

from mmgen.cli import main as cli_main
from mmgen.world import render
from mmgen.world.conversation import MAX_EXCHANGES, TASKS, sample_conversation
from mmgen.world.export import DatasetError, export, read_jsonl
from mmgen.world.prompts import spec_matches
from mmgen.world.language import canonical_location
from mmgen.world.scene import CELLS, Scene, validate


def check_layout_plan(text: str, scene) -> None:
    """A picture's reply names every object with its colour, shape and cell, top row first (the order
    the picture's codes are drawn in), then the background."""
    at = 0
    for o in sorted(scene.objects, key=lambda o: CELLS.index(o.cell)):
        found = text.find(f"{o.color} {o.shape} {canonical_location(o.cell)}", at)
        assert found >= at, (text, o)
        at = found
    if scene.sign is not None:
        assert f'"{scene.sign.word}"' in text
    assert text.endswith(f"{scene.background} background.")


def check_conversation(conv, max_exchanges: int = MAX_EXCHANGES) -> None:
    turns = conv.turns
    assert 2 <= len(turns) <= 2 * max_exchanges and len(turns) % 2 == 0
    current = None
    for user, reply in zip(turns[::2], turns[1::2]):
        assert (user.role, reply.role) == ("user", "assistant")
        assert user.task == reply.task and user.task in TASKS
        assert user.text.strip() and reply.text.strip()
        if user.image is not None:                       # a picture the user brings
            validate(user.image)
            current = user.image
        meta = user.meta
        if user.task == "create":
            validate(reply.image)
            assert all(spec_matches(meta["spec"], reply.image, defaults=True).values())
        elif user.task == "edit":
            check_edit(current, SimpleNamespace(text=user.text, scene=reply.image, record=meta["edit"]))
            assert apply_record(current.to_dict(), meta["edit"]) == reply.image.to_dict()
        elif user.task == "ask":
            assert reply.image is None and reply.text == meta["answer"]
            want = expected_answer(current, meta["question"], meta["about"])
            assert want is None or want == meta["answer"]
        elif user.task == "variation":
            old, new = current, reply.image
            validate(new)
            assert meta["source"] == old.to_dict()
            assert (new.background, new.sign) == (old.background, old.sign)
            kinds = [[(o.shape, o.color, o.size) for o in s.objects] for s in (old, new)]
            assert kinds[0] == kinds[1]
            assert all(a.cell != b.cell for a, b in zip(old.objects, new.objects))
        if user.task in ("create", "variation"):
            check_layout_plan(reply.text, reply.image)
        if reply.image is not None:
            current = reply.image
        assert current is not None                       # every request is about some picture


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 10**8), split=st.sampled_from(("train", "eval")))
def test_conversations_are_consistent(seed, split):
    check_conversation(sample_conversation(seed, split))


def test_conversations_are_deterministic_and_splits_differ():
    for s in range(20):
        assert sample_conversation(s) == sample_conversation(s)
        assert sample_conversation(s, "eval") == sample_conversation(s, "eval")
    train = [sample_conversation(s).turns[0].text for s in range(20)]
    evals = [sample_conversation(s, "eval").turns[0].text for s in range(20)]
    assert train != evals


def test_conversations_mix_every_task():
    tasks, lengths, user_images = Counter(), Counter(), 0
    for s in range(300):
        conv = sample_conversation(s)
        tasks.update(t.task for t in conv.turns[::2])
        lengths[len(conv.turns) // 2] += 1
        user_images += sum(t.image is not None for t in conv.turns[::2])
    assert set(tasks) == set(TASKS)
    assert set(lengths) == set(range(1, MAX_EXCHANGES + 1))
    assert user_images > 30


# --- export --------------------------------------------------------------------------------------
def test_export_round_trip(tmp_path):
    path, n_images = export(tmp_path, 8, split="eval", seed=5)
    examples = read_jsonl(path)
    assert [e.id for e in examples] == [f"eval-{s}" for s in range(5, 13)]
    seen = 0
    for ex in examples:
        conv = sample_conversation(int(ex.id.split("-")[1]), "eval")
        assert len(ex.messages) == len(conv.turns)
        for m, t in zip(ex.messages, conv.turns):
            assert (m.role, m.text, m.task) == (t.role, t.text, t.task)
            assert (m.meta or {}) == json.loads(json.dumps(t.meta))
            assert m.scene == t.image                    # exact geometry survives JSON
            if t.image is None:
                assert m.image is None
            else:
                seen += 1
                assert m.image.size == (128, 128)
                assert m.image.tobytes() == render(t.image).tobytes()
    assert seen == n_images > 0


def test_reader_accepts_real_data_without_scenes(tmp_path):
    from PIL import Image
    (tmp_path / "pics").mkdir()
    Image.new("RGB", (64, 48), (1, 2, 3)).save(tmp_path / "pics" / "cat.png")
    line = {"id": "real-0", "messages": [{"role": "user", "text": "what is this?", "image": "pics/cat.png"},
                                         {"role": "assistant", "text": "a cat"}]}
    (tmp_path / "data.jsonl").write_text(json.dumps(line) + "\n\n")
    [ex] = read_jsonl(tmp_path / "data.jsonl")
    assert ex.messages[0].image.size == (64, 48) and ex.messages[0].scene is None
    assert ex.messages[1].image is None and ex.messages[1].task is None


@pytest.mark.parametrize("line, error", [
    ("not json", "not JSON"),
    ('{"messages": []}', "string 'id'"),
    ('{"id": "x", "messages": []}', "non-empty list"),
    ('{"id": "x", "messages": [{"role": "robot", "text": "hi"}]}', "role"),
    ('{"id": "x", "messages": [{"role": "user", "text": 3}]}', "text"),
    ('{"id": "x", "messages": [{"role": "user", "text": "hi", "image": "images/nope.png"}]}', "not found"),
    ('{"id": "x", "messages": [{"role": "user", "text": "hi", "scene": {"objects": [{"shape": "blob"}]}}]}', "scene"),
    ('{"id": "x", "messages": [{"role": "user", "text": "hi", "scene": {"background": "plaid"}}]}', "invalid scene"),
])
def test_reader_names_the_bad_line(tmp_path, line, error):
    good = json.dumps({"id": "ok", "messages": [{"role": "user", "text": "hi"}]})
    path = tmp_path / "conversations.jsonl"
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(DatasetError, match=error) as info:
        read_jsonl(path)
    assert f"{path}:2" in str(info.value)


def test_cli_export(tmp_path, capsys):
    assert cli_main(["world", "export", "--n", "3", "--out", str(tmp_path), "--seed", "2"]) == 0
    assert "wrote 3 train conversations" in capsys.readouterr().out
    examples = read_jsonl(tmp_path / "conversations.jsonl")
    assert [e.id for e in examples] == ["train-2", "train-3", "train-4"]
    assert not list(tmp_path.glob(".*.tmp")) and not list((tmp_path / "images").glob(".*.tmp"))
    assert cli_main(["world", "export", "--n", "1", "--out", str(tmp_path), "--seed", "-5"]) == 2


@pytest.mark.parametrize("out, reason", [("{d}/afile/x", "Not a directory"), ("{d}/afile", "Not a directory"),
                                         ("/proc/x", "No such file or directory")])
def test_cli_export_to_a_place_it_cannot_write_is_one_line(tmp_path, capsys, out, reason):
    (tmp_path / "afile").write_text("not a folder")
    out = out.replace("{d}", str(tmp_path))
    assert cli_main(["world", "export", "--n", "1", "--out", out]) == 2
    err = capsys.readouterr().err
    assert err == f"mmgen world export: cannot write {out}: {reason}\n"


def test_cli_export_option_of_the_wrong_kind_is_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["world", "export", "--n", "x", "--out", "y"])
    assert e.value.code == 2
    assert capsys.readouterr().err.startswith("mmgen world export: argument --n: invalid int value")


def test_scene_json_round_trip_is_exact():
    for s in range(30):
        for scene in sample_conversation(s).images():
            assert Scene.from_dict(json.loads(json.dumps(scene.to_json_dict()))) == scene


def test_sign_rate_makes_that_share_of_conversations_about_a_sign():
    n = 200
    convs = [sample_conversation(s, sign_rate=0.7) for s in range(n)]
    about_sign = [c for c in convs if c.images()[0].sign is not None]
    # a sign conversation opens on a sign; the world's own mix does so about a third of the time
    assert 0.7 * n * 0.85 <= len(about_sign) <= n * (0.7 + 0.3 * 0.5)
    # its later turns read or change the word often
    word_turns = sum(1 for c in about_sign for t in c.turns
                     if t.role == "user" and (t.meta.get("question") == "word"
                                              or (t.meta.get("edit") or {}).get("kind") == "word"))
    assert word_turns >= len(about_sign) * 0.3
    # a conversation that is not about a sign is the same as without the mix
    plain = [c for c in convs if c.images()[0].sign is None]
    for c in plain[:10]:
        assert c.turns == sample_conversation(c.seed).turns


def test_sign_edits_change_one_attribute_and_stay_legible():
    import random

    from mmgen.eval.benchmark import grade_edit
    from mmgen.world.edits import sample_edit
    from mmgen.world.scene import is_legible
    seen = set()
    for s in range(300):
        scene = sample_conversation(s, sign_rate=1.0).images()[0]
        for kind in ("plaque", "move_sign", "recolor", "background"):
            e = sample_edit(scene, random.Random(s), kind=kind)
            if e is None or e.scene.sign is None:
                continue
            seen.add(kind)
            sign = e.scene.sign
            assert is_legible(sign.color, sign.plaque or e.scene.background)
            if kind in ("plaque", "move_sign"):
                attr = e.record["attribute"]
                assert {k for k, v in sign.to_dict().items() if scene.sign.to_dict()[k] != v} == {attr}
                assert e.scene.objects == scene.objects and e.scene.background == scene.background
                # a judge that reads the edited scene exactly grades it changed and preserved
                assert grade_edit(e.record, scene.to_dict(), e.scene.to_dict(), e.scene.to_dict()) == \
                    {"changed": True, "preserved": True}
                # one that reads the picture unchanged grades it not changed
                assert not grade_edit(e.record, scene.to_dict(), e.scene.to_dict(), scene.to_dict())["changed"]
    assert seen == {"plaque", "move_sign", "recolor", "background"}


@pytest.mark.parametrize("rate, tag", [("chain_rate", "-chain-"), ("quiz_rate", "-quiz-"), ("group_rate", "-group-")])
def test_a_rate_makes_that_share_of_conversations_chains_quizzes_or_groups(rate, tag):
    n = 400
    convs = [sample_conversation(s, **{rate: 0.3}) for s in range(n)]
    chosen = [c for c in convs if tag in c.id]
    assert 0.22 < len(chosen) / n < 0.38
    plain = [sample_conversation(s) for s in range(n)]
    assert all(a.turns == b.turns for a, b in zip(convs, plain) if tag not in a.id)


def test_group_rate_is_a_share_of_what_neither_chains_nor_quizzes_take():
    ids = [sample_conversation(s, chain_rate=0.15, quiz_rate=0.3, group_rate=0.25).id for s in range(1000)]
    share = sum("-group-" in i for i in ids) / len(ids)
    assert 0.11 < share < 0.19                  # 0.85 × 0.7 × 0.25 ≈ 0.149
    assert 0.11 < sum("-chain-" in i for i in ids) / len(ids) < 0.19


def test_chain_questions_are_true_of_the_latest_picture():
    """Every question in a chain is answered from the picture it follows (recomputed by the
    question's own grader), and the last question asks about what the last edit changed."""
    from mmgen.world.conversation import sample_chain
    from mmgen.world.questions import question_after_edit
    kinds = set()
    for seed in range(150):
        c = sample_chain(seed)
        edits = [t for t in c.turns if t.role == "user" and t.task == "edit"]
        assert 2 <= len(edits) <= 6
        assert c.turns[-1].task == "ask"
        current = None
        for user, reply in zip(c.turns[::2], c.turns[1::2]):
            current = user.image or current
            if reply.image is not None:
                current = reply.image
            elif user.task == "ask":
                assert reply.text == user.meta["answer"]
                kinds.add(user.meta["question"])
                assert_answer_holds(current, user.meta)
    assert {"count", "color", "position"} <= kinds


def test_group_conversations_edit_several_shapes_at_once():
    """A group conversation opens on a picture with shapes that share a shape or a colour (the user's
    about half the time); its edits are mostly of several shapes at once or of size, every kind of
    them occurs, groups of three or more at least as often as pairs, each edit and answer is true of its pictures, and the first edit of a user's
    picture comes with it."""
    from mmgen.world.conversation import GROUP_EDITS, sample_group
    from mmgen.world.edits import PLURAL_KINDS
    from mmgen.world.groups import groups
    kinds, firsts, users, sizes = Counter(), 0, 0, Counter()
    for seed in range(300):
        c = sample_group(seed)
        sizes.update(len(t.meta["edit"]["target"]) >= 3 for t in c.turns[::2]
                     if t.task == "edit" and t.meta["edit"]["kind"] in ("recolor_group", "remove_group"))
        check_conversation(c, max_exchanges=1 + 2 * GROUP_EDITS[1])     # a picture, edits, questions
        first = c.turns[0].image if c.turns[0].image is not None else c.turns[1].image
        firsts += any(groups(first))                  # {}, every shape, is falsy
        if c.turns[0].image is not None:
            assert c.turns[0].task == "edit"
            users += 1
        kinds.update(t.meta["edit"]["kind"] for t in c.turns[::2] if t.task == "edit")
    assert firsts >= 295 and 110 < users < 190
    assert set(PLURAL_KINDS) <= set(kinds)
    assert sum(kinds[k] for k in PLURAL_KINDS) >= 0.9 * sum(kinds.values())
    assert min(kinds[k] for k in PLURAL_KINDS) >= 0.08 * sum(kinds.values())
    # the draw touching the most shapes is kept: groups of three or four, not mostly pairs
    assert sizes[True] >= 0.5 * sum(sizes.values()), sizes


def assert_answer_holds(scene, meta):
    """The answer, recomputed apart from questions.py (test_language.expected_answer; "what is in …?"
    here; a description is checked in test_language)."""
    about, answer = meta["about"], meta["answer"]
    if meta["question"] == "what_at":
        o = scene.object_in(about["cell"])
        assert answer == "nothing" if o is None else f"{o.color} {o.shape}" in answer
    elif meta["question"] != "describe":
        assert answer == expected_answer(scene, meta["question"], about), meta


def test_quiz_questions_are_true_of_the_picture_they_follow():
    """A quiz's questions are answered from the latest picture (recomputed by each question's own
    grader) and never repeat on it; most pictures are the user's, and the first question on a
    picture with a sign is about its word half the time, and no later question asks it (colour-check
    drills, which ask each shape twice on purpose, are checked below)."""
    from mmgen.world.conversation import _asked, sample_quiz
    user_pictures = drawn = word_first = signed = 0
    kinds, subjects = set(), {}
    for seed in range(200):
        c = sample_quiz(seed)
        assert c.turns == sample_quiz(seed).turns
        current, asked = None, set()
        for user, reply in zip(c.turns[::2], c.turns[1::2]):
            if user.image is not None or reply.image is not None:
                current, asked = user.image or reply.image, set()
                user_pictures += user.image is not None
                drawn += reply.image is not None
            if reply.image is None:
                assert user.task == "ask" and reply.text == user.meta["answer"]
                assert_answer_holds(current, user.meta)
                kinds.add(user.meta["question"])
                if user.meta.get("drill"):
                    continue
                key = _asked(user.meta)
                assert key not in asked, (user.text, c.id)
                if not asked and current.sign is not None:
                    signed += 1
                    word_first += user.meta["question"] == "word"
                assert user.meta["question"] != "word" or not asked
                # a description or "where are the squares?" names many things: last
                assert not {"describe", "locate"} & {k for k, _ in asked}
                asked.add(key)
                subjects.setdefault((seed, user_pictures + drawn), []).append(user.meta)
    for metas in subjects.values():     # no evidence of a yes/no answer gives a later answer away, or the reverse
        for a in metas:
            for b in metas:
                about_a, about_b = a["about"], b["about"]
                if about_a.get("sign") or about_b.get("sign"):      # "is there a sign?" counts no shape
                    continue
                if (a["question"], b["question"]) in (("exists", "count"), ("exists", "locate"), ("count", "locate")):
                    assert (about_a.get("shape"), about_a.get("color")) != (about_b["shape"], about_b["color"])
                if (a["question"], b["question"]) == ("check_color", "color"):
                    assert about_a["target"] != about_b["target"]
    assert user_pictures > 2 * drawn > 0
    assert 0.35 * signed < word_first < 0.65 * signed
    assert {"word", "count", "exists", "color", "check_color", "describe", "locate"} <= kinds


def test_told_scenes_are_answered_from_the_words_alone():
    """A told scene has no picture anywhere; each scene's first question comes after its description
    in the user's words, which read back as the scene; every answer is true of that scene; quiz kinds
    and drills both occur; held-out frames only in the eval split."""
    from mmgen.world.conversation import TOLD, TOLD_SCENES, sample_told
    from mmgen.world.language import read_description, template_regex
    kinds, drills, scenes = set(), 0, 0
    for seed in range(200):
        c = sample_told(seed)
        assert c.turns == sample_told(seed).turns and "-told-" in c.id
        told = None
        for user, reply in zip(c.turns[::2], c.turns[1::2]):
            assert user.image is None and reply.image is None
            assert user.task == "ask" and reply.text == user.meta["answer"]
            scene = Scene.from_dict(user.meta["told"])
            if scene.to_dict() != told:                 # a new scene: told in this turn's words
                told, scenes = scene.to_dict(), scenes + 1
                want = scene.to_dict()
                want["objects"].sort(key=lambda o: CELLS.index(o["cell"]))
                assert read_description(user.text) == want, user.text
            assert_answer_holds(scene, user.meta)
            kinds.add(user.meta["question"])
            drills += bool(user.meta.get("drill"))
    assert 200 < scenes <= 200 * TOLD_SCENES[1] and drills > 50
    assert {"word", "count", "exists", "color", "check_color", "describe", "locate", "position"} <= kinds
    held_out = [template_regex(t) for t in TOLD.held_out]
    assert not any(rx.search(t.text) for s in range(100) for t in sample_told(s).turns for rx in held_out)
    assert all(any(rx.search(sample_told(s, "eval").turns[0].text) for rx in held_out) for s in range(20))


def test_told_rate_makes_that_share_of_conversations_told_scenes_and_leaves_the_rest():
    n = 400
    mixed = [sample_conversation(s, chain_rate=0.15, quiz_rate=0.3, told_rate=0.2) for s in range(n)]
    plain = [sample_conversation(s, chain_rate=0.15, quiz_rate=0.3) for s in range(n)]
    told = [c for c in mixed if "-told-" in c.id]
    assert 0.13 < len(told) / n < 0.27
    assert all(a.turns == b.turns for a, b in zip(mixed, plain) if "-told-" not in a.id)


def _drill_pictures(seeds, drill_rate=None, drill_kinds=None):
    """(picture, the metas of the questions asked about it) of each quiz drill in `seeds`."""
    from mmgen.world.conversation import DRILL_RATE, sample_quiz
    for seed in seeds:
        c = sample_quiz(seed, drill_rate=DRILL_RATE if drill_rate is None else drill_rate, drill_kinds=drill_kinds)
        pictures = []
        for user, reply in zip(c.turns[::2], c.turns[1::2]):
            if user.image is not None or reply.image is not None:
                pictures.append((user.image or reply.image, []))
            if reply.image is None:
                pictures[-1][1].append(user.meta)
        for scene, metas in pictures:
            checks = [m for m in metas if m.get("drill")]
            if checks:
                others = [m for m in metas if not m.get("drill")]
                assert others in ([], metas[:1]) and all(m["question"] == "word" for m in others)
                kinds = {m["question"] for m in checks}     # one drill kind per picture
                assert any(kinds <= k for k in ({"check_color"}, {"count", "exists"}, {"position", "what_at"},
                                                {"locate"})), kinds
                yield scene, checks


def _named(scene, about):
    from mmgen.world.language import objects_matching
    return tuple(objects_matching(scene, {k: v for k, v in about.items() if k in ("shape", "color") and v}))


def test_some_quiz_pictures_are_drills_of_colour_checks_in_pairs_or_of_counts():
    """Some quiz pictures with two or more shapes get, after any word question, drills only. Some
    are colour checks: up to three shapes, each asked once with its own colour (yes) and once with
    another (no), all in a random order, so neither a check's place nor its partner's verdict gives
    its own away. Others are counts, asked "how many?" or "is there?", each of a different set of
    shapes, and one of a thing not there, anywhere in the drill."""
    from mmgen.world.conversation import COLOR_CHECK_DRILL_SHAPES, COUNT_DRILL_QUESTIONS
    from mmgen.world.questions import YES, verdict
    drills, counts, first_verdicts, partners_apart, none_places, forms = 0, 0, set(), 0, set(), set()
    for scene, checks in _drill_pictures(range(300)):
        if checks[0]["question"] in ("count", "exists"):
            counts += 1
            assert {m["question"] for m in checks} <= {"count", "exists"} and len(checks) <= COUNT_DRILL_QUESTIONS
            forms |= {m["question"] for m in checks}
            nones = [m["answer"] in ("none", "none, so no") for m in checks]
            counted = [_named(scene, m["about"]) for m, none in zip(checks, nones) if not none]
            assert nones.count(True) == 1 and len(set(counted)) == len(counted) == len(checks) - 1
            none_places.add(nones.index(True))
            continue
        if checks[0]["question"] != "check_color":
            continue
        drills += 1
        targets = [m["about"]["target"] for m in checks]
        assert all(m["question"] == "check_color" for m in checks)
        assert len(set(targets)) <= COLOR_CHECK_DRILL_SHAPES and all(targets.count(t) == 2 for t in targets)
        for m in checks:
            assert (verdict(m["answer"]) == YES) == (m["about"]["color"] == scene.objects[m["about"]["target"]].color)
        for t in set(targets):
            assert sorted(verdict(m["answer"]) for m in checks if m["about"]["target"] == t) == ["no", "yes"]
        first_verdicts.add(verdict(checks[0]["answer"]))
        partners_apart += targets[0] != targets[1]          # the first check's partner is not next
    assert counts >= 8 and len(none_places) >= 3 and forms == {"count", "exists"}
    assert drills >= 6 and first_verdicts == {"yes", "no"} and partners_apart >= 3


def test_some_quiz_drills_ask_where_shapes_are_and_what_is_in_cells():
    """Cell drills ask where up to three shapes are, or what is in their cells, and what is in one
    empty cell, in a random order, no two about the same shape or cell. Locate drills ask where up to
    two sets of shapes that share no shape are, and where a thing not there is ("I see none"), never
    "where are the shapes?", whose list of every shape would answer "where are the stars?"."""
    from mmgen.world.conversation import CELL_DRILL_SHAPES, LOCATE_DRILL_SETS
    from mmgen.world.questions import EMPTY_CELL_ANSWER, LOCATE_NONE
    cell_drills, locate_drills, empty_places, none_places, forms = 0, 0, set(), set(), set()
    for scene, checks in _drill_pictures(range(300), drill_rate=1.0):
        kinds = {m["question"] for m in checks}
        if kinds <= {"position", "what_at"}:
            cell_drills += 1
            cells = [m["answer"] if m["question"] == "position" else m["about"]["cell"] for m in checks]
            assert len(set(cells)) == len(cells) <= CELL_DRILL_SHAPES + 1
            empty = [m["answer"] == EMPTY_CELL_ANSWER for m in checks]
            assert empty.count(True) == 1
            empty_places.add(empty.index(True))
            forms |= {m["question"] for m, e in zip(checks, empty) if not e}      # a shape by its place or its cell
        elif kinds == {"locate"}:
            locate_drills += 1
            named = [_named(scene, m["about"]) for m in checks]
            assert all((m["about"]["shape"], m["about"]["color"]) != (None, None) for m in checks)
            assert [m["answer"] == LOCATE_NONE for m in checks] == [not n for n in named]
            assert sum(not n for n in named) == 1 and len(named) <= LOCATE_DRILL_SETS + 1
            members = [i for n in named for i in n]
            assert len(members) == len(set(members))
            none_places.add([bool(n) for n in named].index(False))
    assert cell_drills >= 8 and locate_drills >= 5 and len(empty_places) >= 3 and len(none_places) >= 2
    assert forms == {"position", "what_at"}


def test_a_move_reply_says_where_the_shape_went():
    """Every reply a move could get names the cell it went to: the picture is drawn after it."""
    import random
    from mmgen.world.edits import sample_edit
    from mmgen.world.scene import sample_scene
    moves = 0
    for seed in range(100):
        e = sample_edit(sample_scene(seed), random.Random(seed), kind="move")
        if e is None:
            continue
        moves += 1
        assert all(canonical_location(e.record["after"]) in r for r in e.replies()), e.replies()
    assert moves >= 50


def test_drill_kinds_limit_the_drills_to_those_kinds():
    """`drill_kinds` (`mmgen train lm --drill-kinds`) drills only those kinds; without it, every kind,
    weighed by DRILL_SHARES, and the same quizzes as when every kind is named."""
    from mmgen.world.conversation import DRILL_SHARES, sample_quiz
    asked = [{m["question"] for m in checks} for _, checks in _drill_pictures(range(200), 1.0, ("count", "locate"))]
    assert len(asked) >= 20 and all(kinds <= {"count", "exists"} or kinds == {"locate"} for kinds in asked)
    assert {"count", "exists", "locate"} <= set().union(*asked)
    every = set().union(*({m["question"] for m in checks} for _, checks in _drill_pictures(range(200), 1.0)))
    assert {"check_color", "what_at", "locate", "count"} <= every
    for seed in range(40):
        assert [t.text for t in sample_quiz(seed, drill_rate=1.0).turns] == \
            [t.text for t in sample_quiz(seed, drill_rate=1.0, drill_kinds=tuple(DRILL_SHARES)).turns]


def test_a_drill_phase_makes_every_quiz_picture_with_two_shapes_a_drill():
    from mmgen.world.conversation import sample_quiz
    one_picture_drills = 0
    for seed in range(40):
        turns = sample_quiz(seed, drill_rate=1.0).turns
        scenes = [t.image for t in turns if t.image is not None]
        metas = [t.meta for t in turns if t.role == "user" and t.task == "ask"]
        if len(scenes) == 1 and len(scenes[0].objects) >= 2:
            assert metas and all(m.get("drill") or m["question"] == "word" for m in metas)
            one_picture_drills += 1
    assert one_picture_drills >= 3


def _walk_parts(text: str) -> tuple[list[tuple[str, str, str, str]], str]:
    """(colour, shape, where, mark) of each shape a walked answer goes through, and its answer."""
    marks, answer = text.rsplit(" — ", 1)
    parsed = []
    for part in marks.split(", "):
        phrase, mark = part.rsplit(": ", 1)
        color, shape, where = re.fullmatch(r"the (\S+) (\S+) (.+)", phrase).groups()
        parsed.append((color, shape, where, mark))
    return parsed, answer


def test_walked_answers_go_through_every_shape_in_reading_order_and_end_with_the_answer():
    """With `walk_rate` 1 every count, "is there …?" and "where are the …?" answer about shapes that is
    the last question about its scene first names each shape of that scene (the told scene, else the
    latest picture) in reading order, marked with the running count of those that fit the question or
    "no", then gives the answer it gave without the walk; the rest of the conversation is unchanged."""
    from mmgen.world.questions import WALK_KINDS
    counts = ("none", "one", "two", "three", "four")
    walked_kinds = Counter()
    for seed in range(300):
        plain = sample_conversation(seed, chain_rate=0.15, quiz_rate=0.4, told_rate=0.2)
        walking = sample_conversation(seed, chain_rate=0.15, quiz_rate=0.4, told_rate=0.2, walk_rate=1.0)
        current = None

        def asked_again(user, scene):
            """A later question of the conversation asks about `scene` too (the walk would answer it)."""
            at, latest = plain.turns.index(user), None
            for j, t in enumerate(plain.turns):
                latest = t.image if t.image is not None else latest
                about = Scene.from_dict(t.meta["told"]) if "told" in t.meta else latest
                if j > at and t.role == "user" and "question" in t.meta and about == scene:
                    return True
            return False

        for before, after in zip(plain.turns, walking.turns):
            current = before.image if before.image is not None else current
            assert (before.role, before.image, before.task) == (after.role, after.image, after.task)
            if before.role == "user":
                assert after.text == before.text
                user = before
                continue
            kind, about = user.meta.get("question"), user.meta.get("about", {})
            scene = Scene.from_dict(user.meta["told"]) if "told" in user.meta else current
            if kind not in WALK_KINDS or about.get("sign") or not scene.objects or asked_again(user, scene):
                assert after.text == before.text
                continue
            walked_kinds[kind] += 1
            marks, answer = _walk_parts(after.text)
            assert answer == before.text == expected_answer(scene, kind, about)
            shown = sorted(scene.objects, key=lambda o: CELLS.index(o.cell))
            assert [(c, s, w) for c, s, w, _ in marks] == [(o.color, o.shape, canonical_location(o.cell)) for o in shown]
            n = 0
            for o, (*_, mark) in zip(shown, marks):
                fits = about["shape"] in (None, o.shape) and about["color"] in (None, o.color)
                n += fits
                assert mark == (counts[n] if fits else "no")
            if kind == "count":
                assert answer == counts[n]
    assert all(walked_kinds[k] >= 20 for k in WALK_KINDS), walked_kinds


def test_walk_rate_walks_that_share_of_conversations():
    n = 400
    walking = [sample_conversation(s, quiz_rate=0.5, walk_rate=0.3) for s in range(n)]
    plain = [sample_conversation(s, quiz_rate=0.5) for s in range(n)]
    changed = sum(a.turns != b.turns for a, b in zip(walking, plain))
    from mmgen.world.conversation import walked
    walkable = sum(walked(c).turns != c.turns for c in plain)
    assert walkable > 100 and 0.2 * walkable < changed < 0.4 * walkable


def _one_slip_apart(a: str, b: str) -> bool:
    """b is a with one letter dropped, doubled, swapped with the next or replaced."""
    if len(b) == len(a) - 1:
        return any(a[:i] + a[i + 1:] == b for i in range(len(a)))
    if len(b) == len(a) + 1:
        return any(b[:i] + b[i + 1:] == a and b[i] == b[i - 1] for i in range(1, len(b)))
    diff = [i for i in range(len(a)) if a[i] != b[i]] if len(a) == len(b) else None
    return diff is not None and (len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                                    and (a[diff[0]], a[diff[1]]) == (b[diff[1]], b[diff[0]])))


def test_a_typing_slip_changes_one_lower_case_word_by_one_letter_and_never_a_sign():
    import random
    import re

    from mmgen.world.typos import NEIGHBOURS, misspell
    rng = random.Random(0)
    texts = ['draw a sign that says "HELLO" in yellow please', "make the circles yellow",
             "add two red triangles at the top left", "what colour is the square?", "a red dot", "hi"]
    for _ in range(200):
        for text in texts:
            typed = misspell(text, rng)
            a, b = text.split(), typed.split()
            changed = [(x, y) for x, y in zip(a, b) if x != y]
            if not [w for w in re.findall(r"\b[a-z]{4,}\b", re.sub(r'"[^"]*"', "", text))]:
                assert typed == text                         # nothing long enough to slip on
                continue
            assert len(a) == len(b) and len(changed) == 1, (text, typed)
            x, y = changed[0]
            assert x.islower() and '"' not in x and x[0] == y[0] and x[-1] == y[-1], (x, y)
            assert _one_slip_apart(x, y), (x, y)
    assert all(len(keys) >= 2 and ch not in keys for ch, keys in NEIGHBOURS.items())


def test_typo_rate_slips_that_share_of_user_messages_and_nothing_else():
    from mmgen.world.conversation import sample_conversation
    n, slipped, users = 300, 0, 0
    for seed in range(n):
        clean = sample_conversation(seed, quiz_rate=0.3)
        typed = sample_conversation(seed, quiz_rate=0.3, typo_rate=0.5)
        assert typed == sample_conversation(seed, quiz_rate=0.3, typo_rate=0.5)         # seeded
        assert len(typed.turns) == len(clean.turns)
        for c, t in zip(clean.turns, typed.turns):
            assert (t.role, t.image, t.task, t.meta) == (c.role, c.image, c.task, c.meta)
            if c.role == "assistant":
                assert t.text == c.text
            elif c.text:
                users += 1
                slipped += t.text != c.text
    assert 0.35 * users < slipped < 0.55 * users       # a half, less messages with no word to slip on
    assert sample_conversation(3, quiz_rate=0.3, typo_rate=0.0) == sample_conversation(3, quiz_rate=0.3)


def test_a_question_before_any_picture_is_answered_that_there_is_none():
    from mmgen.world.conversation import NO_PICTURE_REPLY
    n, opened = 300, 0
    for seed in range(n):
        mix = {"quiz_rate": 0.3, "told_rate": 0.1, "walk_rate": 0.5}       # walked answers stay as they were
        plain = sample_conversation(seed, **mix)
        mixed = sample_conversation(seed, **mix, no_picture_rate=0.3)
        assert mixed == sample_conversation(seed, **mix, no_picture_rate=0.3)                   # seeded
        assert all(t.text != NO_PICTURE_REPLY for t in plain.turns)
        if mixed == plain:
            continue
        opened += 1
        question, reply = mixed.turns[:2]
        assert question.role == "user" and question.image is None and question.task == "ask"
        assert question.meta["no_picture"] and question.meta["question"] and question.text.strip()
        assert (reply.role, reply.text, reply.image) == ("assistant", NO_PICTURE_REPLY, None)
        assert mixed.turns[2:] == plain.turns                     # the rest of the conversation as it was
    assert 0.2 * n < opened < 0.4 * n


def test_training_draws_moves_and_resizes_more_often_than_held_out_splits():
    """The train split's edit mix leans to moves and resizes (edits.TRAIN_EDIT_WEIGHTS); the held-out
    splits keep EDIT_WEIGHTS, so the benchmark's edit cases stay the same."""
    import random
    from mmgen.world.edits import sample_edit
    from mmgen.world.scene import sample_scene

    def kinds(split):
        return Counter(e.record["kind"] for seed in range(600)
                       if (e := sample_edit(sample_scene(seed), random.Random(seed), split=split)) is not None)
    train, held_out = kinds("train"), kinds("eval")
    share = lambda c, k: c[k] / sum(c.values())
    assert share(train, "move") > 1.4 * share(held_out, "move")
    assert share(train, "resize") > 1.4 * share(held_out, "resize")


def test_small_talk_is_one_exchange_of_its_own_line_and_the_rest_stays():
    """A greeting opens the chat (or its first request), thanks or praise follow a picture, a goodbye
    ends it; each is answered with its kind's line and no picture, and every other turn is as it was."""
    from mmgen.world.conversation import SMALL_TALK_REPLIES, SMALL_TALK_TASK
    n, talked, greeted_requests = 300, Counter(), 0
    for seed in range(n):
        mix = {"quiz_rate": 0.3, "chain_rate": 0.2, "no_picture_rate": 0.1}
        plain = sample_conversation(seed, **mix)
        mixed = sample_conversation(seed, **mix, small_talk_rate=0.5)
        assert mixed == sample_conversation(seed, **mix, small_talk_rate=0.5)                  # seeded
        if mixed == plain:
            continue
        if len(mixed.turns) == len(plain.turns):             # a greeting opening the first request
            first, was = mixed.turns[0], plain.turns[0]
            assert first.text.lower().endswith(was.text[1:].lower()) and len(first.text) > len(was.text)
            assert mixed.turns[1:] == plain.turns[1:]
            greeted_requests += 1
            continue
        at = next(i for i, t in enumerate(mixed.turns) if t.task == SMALL_TALK_TASK)
        message, reply = mixed.turns[at:at + 2]
        kind = message.meta["small_talk"]
        talked[kind] += 1
        assert message.role == "user" and message.image is None and message.text.strip()
        assert (reply.role, reply.text, reply.image) == ("assistant", SMALL_TALK_REPLIES[kind], None)
        assert mixed.turns[:at] + mixed.turns[at + 2:] == plain.turns
        assert at == {"greeting": 0, "farewell": len(plain.turns)}.get(kind, at)
        if kind == "praise":                                  # right after a picture
            assert mixed.turns[at - 1].role == "assistant" and mixed.turns[at - 1].image is not None
    assert 0.35 * n < sum(talked.values()) + greeted_requests < 0.65 * n
    assert min(talked.values()) > 5 and greeted_requests > 5
