"""`mmgen eval`: the benchmark's mechanics on a tiny random model (its scores mean nothing here)."""
from __future__ import annotations

import json
import random
import re

import pytest

from mmgen.cli import main
from mmgen.eval.benchmark import GEN_CATEGORIES, summarise, variation_checks
from mmgen.world.conversation import NO_PICTURE_REPLY


def _eval(tmp_path, checkpoints, *extra):
    out = tmp_path / f"eval-{len(list(tmp_path.iterdir()))}.json"
    code = main(["eval", "--n", "1", "--checkpoints", str(checkpoints), "--out", str(out), "--no-refine", *extra])
    return code, (json.loads(out.read_text()) if out.exists() else None)


def test_eval_writes_every_part_and_its_split(tmp_path, tiny_checkpoints, capsys):
    code, got = _eval(tmp_path, tiny_checkpoints, "--split", "train")
    assert code == 0
    assert got["split"] == "train" and got["n"] == 1
    assert set(got["summary"]) == {"generation", "editing", "plural_edits", "questions", "after_edits", "variations",
                                   "words", "no_picture", "small_talk"}
    assert len(got["results"]["nopic"]) == len(got["results"]["smalltalk"]) == got["n"]
    words = got["results"]["words"]
    assert len(words["drawn"]) == len(words["read"]) == got["n"]
    for case in words["read"]:      # graded against the word the judge reads in the picture asked about
        said = re.sub(r"[^A-Z0-9 ]", "", case["answer"].upper()).strip()
        assert case["expected"] and case["passed"] == (said == case["expected"])
    assert set(got["results"]["gen"]) == set(GEN_CATEGORIES)
    for metrics in got["summary"].values():
        for name, value in metrics.items():
            if name.endswith("cases"):
                assert 0 <= value <= len(GEN_CATEGORIES) * got["n"]
            else:
                breakdown = name.endswith("words") or name.startswith(("changed_", "exact_", "replied_")) or \
                        name in ("user_picture", "reply_right", "follows_right_reply")      # None: no case
                assert (value is None and breakdown) or 0.0 <= value <= 1.0, (name, value)
        cases = metrics.get("cases", len(GEN_CATEGORIES) * got["n"])
        assert metrics["known_words_cases"] + metrics["new_words_cases"] == cases
    assert {"plan_matches_prompt", "picture_matches_plan"} <= set(got["summary"]["generation"])
    for cases in got["results"]["gen"].values():
        for case in cases:
            assert isinstance(case["reply"], str) and isinstance(case["plan_ok"], bool)
            assert not case["plan_ok"] if case["plan"] is None else case["as_planned"] in (None, True, False)
    for case in got["results"]["edit"] + got["results"]["plural"]:    # a failure shows what was drawn instead
        assert case["before"] != case["expected"] and set(case["expected"]) == {"background", "objects", "sign"}
        assert case["found"] is None and not (case["changed"] or case["preserved"]) or \
            set(case["found"]) >= {"background", "objects", "sign"}
    assert "train split" in capsys.readouterr().out


def test_a_question_before_any_picture_passes_only_when_the_reply_says_there_is_none():
    from types import SimpleNamespace
    from mmgen.eval.benchmark import run_no_picture

    class Scripted:
        """A model whose every chat replies `text`, with `image` as its picture."""
        def __init__(self, text, image=None):
            self.text, self.image, self.asked = text, image, []

        def chat(self, **settings):
            return self

        def send(self, text):
            self.asked.append(text)
            return SimpleNamespace(text=self.text, image=self.image)

    right = Scripted(NO_PICTURE_REPLY + " ")
    cases = run_no_picture(right, 4, 0, {})
    assert len(cases) == 4 and all(c["passed"] and not c["drew"] for c in cases)
    assert len({c["kind"] for c in cases}) == 4 and [c["question"] for c in cases] == right.asked
    assert not any(c["passed"] for c in run_no_picture(Scripted(NO_PICTURE_REPLY, image=object()), 4, 0, {}))
    assert not any(c["passed"] for c in run_no_picture(Scripted("two"), 4, 0, {}))


def test_small_talk_passes_only_with_its_own_line_and_no_picture():
    from types import SimpleNamespace
    import torch
    from mmgen.eval.benchmark import run_small_talk
    from mmgen.world.conversation import SMALL_TALK, SMALL_TALK_REPLIES
    kind_of = {t: k for k, fam in SMALL_TALK.items() for t in fam.held_out}

    class Scripted:
        """A model whose chats answer each small-talk message with `reply(kind)`, drawing `image`."""
        def __init__(self, reply, image=None):
            self.reply, self.image, self.asked = reply, image, []
            self.vq = SimpleNamespace(encode=lambda picture: torch.zeros(1, 16, 16, dtype=torch.long))

        def chat(self, **settings):
            return self

        def send(self, text):
            self.asked.append(text)
            return SimpleNamespace(text=self.reply(kind_of[text]), image=self.image)

    right = Scripted(lambda kind: SMALL_TALK_REPLIES[kind])
    cases = run_small_talk(right, 6, 0, {})
    assert [c["kind"] for c in cases] == ["greeting", "praise", "farewell"] * 2
    assert all(c["passed"] and not c["drew"] for c in cases) and [c["message"] for c in cases] == right.asked
    assert not any(c["passed"] for c in run_small_talk(Scripted(lambda k: SMALL_TALK_REPLIES[k], object()), 6, 0, {}))
    wrong = run_small_talk(Scripted(lambda k: SMALL_TALK_REPLIES["greeting"]), 6, 0, {})
    assert [c["passed"] for c in wrong] == [True, False, False] * 2
    summary = summarise({"smalltalk": cases + wrong})["small_talk"]
    assert summary["replied"] == 8 / 12 and summary["replied_greeting"] == 1.0 and summary["replied_praise"] == 0.5


def test_train_split_asks_other_prompts_than_the_held_out_one(tmp_path, tiny_checkpoints):
    _, train = _eval(tmp_path, tiny_checkpoints, "--split", "train", "--parts", "gen")
    _, held_out = _eval(tmp_path, tiny_checkpoints, "--parts", "gen")
    assert held_out["split"] == "eval"
    prompts = lambda r: [c["prompt"] for cases in r["results"]["gen"].values() for c in cases]   # noqa: E731
    assert set(prompts(train)).isdisjoint(prompts(held_out))


def test_paraphrase_split_asks_in_known_words_only(tmp_path, tiny_checkpoints):
    code, got = _eval(tmp_path, tiny_checkpoints, "--split", "paraphrase", "--parts", "gen,ask")
    assert code == 0 and got["split"] == "paraphrase"
    cases = [c for cs in got["results"]["gen"].values() for c in cs] + got["results"]["ask"]
    assert cases and all(c["unseen_words"] == [] for c in cases)
    assert got["summary"]["generation"]["known_words_cases"] == len(GEN_CATEGORIES)
    _, held_out = _eval(tmp_path, tiny_checkpoints, "--parts", "ask")
    # held-out frames, trained words: the default split asks in known words too
    assert all(c["unseen_words"] == [] for c in held_out["results"]["ask"])


def test_unknown_part_and_split_are_refused(tmp_path, tiny_checkpoints, capsys):
    code, got = _eval(tmp_path, tiny_checkpoints, "--parts", "gen,dance")
    assert code == 2 and got is None
    assert "unknown part" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:      # argparse: a clear message and exit status 2
        main(["eval", "--split", "test"])
    assert refused.value.code == 2


def test_variation_grading_needs_the_same_things_in_a_new_layout():
    a = {"shape": "circle", "color": "red", "size": "medium", "cell": "top left"}
    b = {"shape": "star", "color": "blue", "size": "small", "cell": "center"}
    source = {"background": "white", "objects": [a, b], "sign": None}
    moved = {**source, "objects": [{**a, "cell": "bottom"}, b]}
    assert all(variation_checks(source, moved).values())
    assert variation_checks(source, source) == {"same_things": True, "new_layout": False,   # same layout
                                                "background": True, "sign": True}
    assert not variation_checks(source, {**moved, "background": "cream"})["background"]
    recoloured = variation_checks(source, {**moved, "objects": [{**a, "cell": "bottom", "color": "green"}, b]})
    assert not recoloured["same_things"] and recoloured["new_layout"]
    signed = variation_checks(source, {**moved, "sign": {"word": "OPEN", "color": None, "plaque": None, "band": "top"}})
    assert not signed["sign"] and signed["same_things"]
    # a case with no picture found records {"picture": False}: it holds no check
    cases = [{"passed": True, "checks": variation_checks(source, moved), "unseen_words": []},
             {"passed": False, "checks": {"picture": False}, "unseen_words": []}]
    got = summarise({"var": cases})["variations"]
    assert got["passed"] == got["held_same_things"] == got["held_sign"] == 0.5


def test_plan_figures_count_plans_and_only_pictures_with_a_plan():
    def case(plan_ok, as_planned):
        return {"passed": False, "checks": {}, "plan_ok": plan_ok, "as_planned": as_planned}
    gen = {"single_object": [case(True, True), case(True, False)], "counting": [case(False, None), case(False, True)]}
    got = summarise({"gen": gen})["generation"]
    assert got["plan_matches_prompt"] == 0.5                 # 2 of 4 replies planned what was asked
    assert got["picture_matches_plan"] == 2 / 3              # the reply without a plan is left out


@pytest.mark.parametrize("kind", ["add_many", "recolor_group", "remove_group", "remove_one"])
def test_group_edits_are_graded_on_every_object_they_name(kind):
    """A reading that is the edited scene passes; one that is the scene before fails, and one that
    also changes an object outside the group is not preserved."""
    import random

    from mmgen.eval.benchmark import grade_edit
    from mmgen.world.edits import sample_edit
    from mmgen.world.scene import sample_scene
    tried = 0
    for seed in range(200):
        scene = sample_scene(seed)
        e = sample_edit(scene, random.Random(seed), kind=kind)
        if e is None:
            continue
        before, after = scene.to_dict(), e.scene.to_dict()
        assert grade_edit(e.record, before, after, after) == {"changed": True, "preserved": True}
        assert not grade_edit(e.record, before, after, before)["changed"]
        touched = set(e.record["target"] if isinstance(e.record["target"], list) else [e.record["target"]])
        if kind == "remove_one":
            touched = set(e.record["asked"]["members"])
        outside = [i for i, o in enumerate(after["objects"]) if o["cell"] not in
                   {before["objects"][j]["cell"] for j in touched if j < len(before["objects"])}
                   and o in before["objects"]]
        if outside:
            spoilt = {**after, "objects": [dict(o, color="black" if o["color"] != "black" else "white")
                                           if k == outside[0] else o for k, o in enumerate(after["objects"])]}
            assert not grade_edit(e.record, before, after, spoilt)["preserved"]
        tried += 1
    assert tried >= 20


def test_yes_no_answers_are_graded_by_their_verdict_and_their_evidence():
    from mmgen.eval.benchmark import answers_match
    truth = "it's orange — red? no"
    assert answers_match("It's orange — red? No.", truth, "check_color")
    assert answers_match("red? it's orange, so no", truth, "check_color")       # the colour asked first: the same
    assert answers_match("No.", truth, "check_color") and answers_match("no", truth, "check_color")
    assert not answers_match("yes", truth, "check_color")
    assert not answers_match("red? it's green, so no", truth, "check_color")      # the evidence is wrong
    assert answers_match("it's orange, so no", truth, "check_color")       # the colour asked need not be repeated
    assert answers_match("it's orange, so no?", truth, "check_color")
    assert not answers_match("it's orange, so yes", truth, "check_color")
    assert not answers_match("orange? it's orange, so no", truth, "check_color")   # repeated wrong
    assert not answers_match("it's orange — orange? no", truth, "check_color")
    assert not answers_match("it's orange — red? yes", truth, "check_color")
    assert answers_match("red? no", truth, "check_color")                     # no evidence: the verdict alone
    assert answers_match("I see two, so yes", "I see two, so yes", "exists")
    # the count said bare or after "I see" grades alike, either way round
    assert answers_match("two, so yes", "I see two, so yes", "exists")
    assert answers_match("I see two, so yes", "two, so yes", "exists")
    assert not answers_match("I see none, so yes", "two, so yes", "exists")
    assert not answers_match("one, so yes", "two, so yes", "exists")
    assert not answers_match("I see, so yes", "two, so yes", "exists")          # "I see" without its count
    assert answers_match("its orange — red? no", truth, "check_color")         # apostrophes as in normalise_answer
    assert answers_match("it’s orange — red? no", truth, "check_color")
    assert not answers_match("red? yes", "yes", "exists")                      # a colour asked that was not
    assert not answers_match("red? I see two, so yes", "I see two, so yes", "exists")
    assert answers_match("yes", "I see two, so yes", "exists")
    assert not answers_match("I see none, so yes", "I see two, so yes", "exists")
    assert not answers_match("I see none, so yes", "yes", "exists")            # "is there a sign?": bare
    assert not answers_match("no idea", truth, "check_color") and not answers_match("yes or no", truth, "check_color")
    # a word is graded word for word, even the sign words YES and NO
    assert answers_match("NO", "NO", "word") and not answers_match("I see none, so no", "NO", "word")


def test_where_answers_come_from_the_picture_read_and_are_split_by_kind():
    from mmgen.eval.benchmark import answer_from_reading
    from mmgen.eval.judge import judge
    from mmgen.world import render
    from mmgen.world.scene import Obj, Scene
    shown = Scene(background="white", objects=(Obj("square", "red", "medium", "top left"),
                                               Obj("circle", "blue", "medium", "center")))
    meta = {"question": "locate", "about": {"shape": "square", "color": None}, "answer": "stale"}
    assert answer_from_reading(meta, shown, judge(render(shown))) == "the red square in the top left"
    more = Scene(background="white", objects=shown.objects + (Obj("square", "green", "medium", "bottom right"),))
    assert answer_from_reading(meta, shown, judge(render(more))) == \
        "the red square in the top left and the green square in the bottom right"
    meta["about"] = {"shape": "star", "color": None}
    assert answer_from_reading(meta, shown, judge(render(shown))) == "I see none"
    cases = [{"kind": k, "passed": p, "user_picture": False, "unseen_words": []}
             for k, p in (("locate", True), ("locate", False), ("count", True))]
    got = summarise({"ask": cases})["questions"]
    assert got["exact_locate"] == 0.5 and got["exact_count"] == 1.0 and "exact_color" not in got


def test_edit_cases_keep_the_scenes_before_asked_for_and_drawn():
    """`_edit_case` (editing and plural parts) on pictures drawn without a model: the edited scene,
    the untouched one, and none at all."""
    from types import SimpleNamespace

    from mmgen.eval.benchmark import _edit_case
    from mmgen.eval.judge import judge
    from mmgen.world import render
    from mmgen.world.edits import sample_edit
    from mmgen.world.scene import Obj, Scene
    before = Scene(background="white", objects=(Obj("square", "red", "medium", "top left"),
                                                Obj("circle", "blue", "medium", "center")))
    edit = sample_edit(before, random.Random(0), split="eval", kind="recolor")
    for drawn, passes in ((edit.scene, True), (before, False), (None, False)):
        image = None if drawn is None else render(drawn)
        case = _edit_case(edit, before, SimpleNamespace(text=edit.reply, image=image))
        assert case["before"] == before.to_dict() and case["expected"] == edit.scene.to_dict()
        assert case["found"] == (None if image is None else judge(image))
        assert case["changed"] == passes and case["preserved"] == (drawn is not None)
        assert case["kind"] == "recolor" and case["reply_right"]
        assert json.loads(json.dumps(case)) == case


def test_edit_replies_are_right_in_any_phrasing_of_what_they_name():
    from mmgen.eval.benchmark import OPEN_REPLY_KINDS, edit_reply_right, reply_split
    from mmgen.world.edits import EDIT_KINDS, sample_edit
    from mmgen.world.scene import sample_scene
    seen = set()
    for i in range(300):
        kind = EDIT_KINDS[i % len(EDIT_KINDS)]
        edit = sample_edit(sample_scene(i), random.Random(i), kind=kind)
        if edit is None:
            continue
        seen.add(kind)
        assert edit.reply in edit.replies()
        if kind in OPEN_REPLY_KINDS:
            assert edit_reply_right(edit, edit.reply) is None
            continue
        assert all(edit_reply_right(edit, r + " ") for r in edit.replies())     # any phrasing
        assert not edit_reply_right(edit, "I see one, so yes")
        for slot in ("name", "after"):      # the same phrasing naming another thing, or another result, is wrong
            if edit.reply_slots.get(slot) and edit.reply_slots[slot] in edit.reply:
                assert not edit_reply_right(edit, edit.reply.replace(edit.reply_slots[slot], "the blue star"))
        if kind == "word":
            assert not edit_reply_right(edit, edit.reply.replace(edit.record["after"], edit.record["after"].lower()))
    assert seen == set(EDIT_KINDS)
    cases = [{"reply_right": True, "changed": True, "preserved": True},
             {"reply_right": True, "changed": True, "preserved": False},
             {"reply_right": False, "changed": False, "preserved": True},
             {"reply_right": None, "changed": False, "preserved": False}]
    assert reply_split(cases) == {"reply_right": 2 / 3, "follows_right_reply": 0.5}


def test_walked_replies_are_graded_on_their_answer():
    """A count, "is there …?" or "where are the …?" reply that walks through the shapes first grades
    as its answer after the dash; other kinds grade whole."""
    from mmgen.eval.benchmark import answers_match
    walked = "the red circle in the top left: one, the blue square in the center: no, the red circle on the right: two"
    assert answers_match(f"{walked} — two", "two", "count")
    assert not answers_match(f"{walked} — one", "two", "count")
    assert answers_match(f"{walked} — two, so yes", "two, so yes", "exists")
    assert not answers_match(f"{walked} — none, so no", "two, so yes", "exists")
    assert answers_match("the red square at the top: one — the red square at the top", "the red square at the top",
                         "locate")
    assert not answers_match(f"{walked} — red", "red", "color")


def test_mcnemar_p_is_the_two_sided_exact_binomial_tail():
    from mmgen.eval.compare import mcnemar_p
    assert mcnemar_p(0, 0) == 1.0 and mcnemar_p(3, 3) == 1.0
    assert mcnemar_p(0, 6) == pytest.approx(2 / 64) == mcnemar_p(6, 0)
    assert mcnemar_p(3, 13) == pytest.approx(2 * (1 + 16 + 120 + 560) / 2 ** 16)
    assert mcnemar_p(0, 5) > 0.05 > mcnemar_p(0, 6)       # five flips one way are not yet a difference


def _paired(flags_a, flags_b):
    """Two eval results on the same three-case parts, passing as the flags say."""
    def result(flags):
        gen = {c: [{"prompt": f"{c} {i}", "passed": f} for i, f in enumerate(flags)] for c in ("colors", "sign")}
        edits = [{"instruction": f"edit {i}", "changed": f, "preserved": True} for i, f in enumerate(flags)]
        return {"results": {"gen": gen, "edit": edits}}
    return result(flags_a), result(flags_b)


def test_compare_pairs_the_same_cases_and_counts_those_only_one_run_passes():
    from mmgen.eval.compare import compare
    rows = {r["part"]: r for r in compare(*_paired([True, True, False], [False, True, True]))}
    assert list(rows) == ["gen/colors", "gen/sign", "gen (all)", "edit changed", "edit preserved"]
    assert rows["gen/colors"] | {"p": None} == {"part": "gen/colors", "cases": 3, "a": 2 / 3, "b": 2 / 3,
                                               "only_a": 1, "only_b": 1, "p": None}
    assert (rows["gen (all)"]["cases"], rows["gen (all)"]["only_a"], rows["gen (all)"]["only_b"]) == (6, 2, 2)
    assert rows["edit preserved"]["only_a"] == rows["edit preserved"]["only_b"] == 0
    assert rows["edit preserved"]["p"] == 1.0


def test_compare_refuses_other_cases_and_files_that_are_not_results(tmp_path, capsys):
    from mmgen.eval.compare import CompareError, compare, main as compare_main
    a, b = _paired([True] * 3, [True] * 3)
    b["results"]["edit"][1]["instruction"] = "another edit"
    with pytest.raises(CompareError, match="different cases"):
        compare(a, b)
    with pytest.raises(CompareError, match="share no part"):
        compare({"results": {"ask": []}}, {"results": {"edit": []}})
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "list.json").write_text("[]")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00 not text")
    for other in ("bad.json", "list.json", "missing.json", "binary.json"):
        assert compare_main([str(tmp_path / "a.json"), str(tmp_path / other)]) == 2
        assert capsys.readouterr().err.startswith("error: ")


def test_compare_reads_what_mmgen_eval_writes(tmp_path, tiny_checkpoints, capsys):
    """Every part an eval writes is compared; a run against itself differs nowhere."""
    from mmgen.eval.compare import main as compare_main
    code, _ = _eval(tmp_path, tiny_checkpoints, "--split", "train")
    assert code == 0
    path = str(next(tmp_path.glob("eval-*.json")))
    capsys.readouterr()
    assert compare_main([path, path]) == 0
    table = capsys.readouterr().out
    for part in ("gen (all)", "edit changed", "plural preserved", "ask", "chain", "var", "words/drawn", "words/read"):
        assert f"\n{part} " in table, part
    rows = table.splitlines()[2:-1]
    assert rows and all(row.split()[-3:] == ["0", "0", "1.000"] for row in rows), table


def test_typos_sends_each_message_with_the_same_slip_and_reaches_the_session_itself():
    from mmgen.eval.benchmark import Typing

    class Chat:
        conversation, sent = None, []

        def send(self, text, **kwargs):
            self.sent.append((text, kwargs))
            return text

    class Model:
        vq = "the tokenizer"

        def chat(self, **settings):
            return Chat()

    typing = Typing(Model())
    assert typing.vq == "the tokenizer"
    chat = typing.chat(seed=1)
    chat.conversation = "given"
    assert chat._chat.conversation == "given"
    first = chat.send("make the circles yellow please", picture="never")
    assert first != "make the circles yellow please" and Chat.sent[-1] == (first, {"picture": "never"})
    assert typing.chat().send("make the circles yellow please") == first      # seeded by the message


def test_eval_with_typos_says_so(tmp_path, tiny_checkpoints, capsys):
    code, got = _eval(tmp_path, tiny_checkpoints, "--parts", "edit", "--typos")
    assert code == 0 and got["typos"] is True
    assert "a typing slip in every message" in capsys.readouterr().out


def test_eval_refuses_seeds_out_of_range_before_loading(tmp_path, capsys):
    from mmgen.inputs import MAX_SEED
    with pytest.raises(SystemExit):
        main(["eval", "--seed", "-1", "--checkpoints", str(tmp_path / "none")])
    assert "seed must be an integer" in capsys.readouterr().err
    assert main(["eval", "--seed", str(MAX_SEED), "--n", "2", "--checkpoints", str(tmp_path / "none")]) == 2
    assert "no room for 2 cases" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--cfg", "99"], "cfg must be a number in [0, 20]"),
    (["--top-k", "0"], "top_k must be a positive integer"),
    (["--out", "{d}"], "is a folder; give a file name such as"),
    (["--out", "{d}/afile/eval.json"], "afile is not a folder"),
    (["--out", "{d}/locked/new/eval.json"], "no permission to write in"),
    (["--device", "foo"], "--device 'foo' is not a device torch knows"),
    (["--device", "cuda"], "--device 'cuda': no CUDA GPU is available"),
    (["--save-images", "{d}/afile"], "afile is a file; give a folder"),
    (["--save-images", "{d}/afile/pictures"], "afile is not a folder"),
])
def test_eval_refuses_bad_settings_out_and_device_before_loading(tmp_path, capsys, monkeypatch, extra, message):
    """One line and exit code 2 before the model loads (the checkpoints named do not exist), so a
    mistake costs neither the loading nor the run. CUDA is made absent for the cuda case."""
    import os

    import torch
    if "locked" in extra[1] and os.geteuid() == 0:
        pytest.skip("root may write anywhere")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "locked").mkdir(mode=0o500)
    extra = [a.replace("{d}", str(tmp_path)) for a in extra]
    assert main(["eval", "--checkpoints", str(tmp_path / "none"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmgen eval: ") and message in err and err.count("\n") == 1, err


def test_eval_without_a_checkpoints_folder_says_so(tmp_path, capsys):
    assert main(["eval", "--checkpoints", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err == f"mmgen eval: no checkpoints folder at {tmp_path / 'none'}\n"


def test_eval_option_of_the_wrong_kind_is_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["eval", "--n", "x"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("mmgen eval: argument --n: invalid int value") and err.count("\n") == 1, err
