"""`mmgen eval`: the model's fixed-seed benchmark, graded by the judge.

Held-out scenes and held-out phrasings only (the evaluation split of the world). Eight parts:

- generation (GenEval-style): a prompt per case in each category — single object, two objects,
  counting, a count with one other shape, colours, position, colour attribution, sign; a case
  passes when the judge's reading of the picture satisfies everything the prompt asked
  (`prompts.spec_matches`). "overall" is the mean over categories; "sign words" is the share of
  sign prompts whose word is exact.
  Two diagnostics split the failures: "plan matches prompt" (the reply's layout plan, read with
  `language.read_description`, satisfies the prompt) and "picture matches plan" (the judge
  reads exactly the planned scene, over the cases with a plan and a picture).
- editing: a picture already in the conversation (its exact codes), then an edit instruction;
  "changed" = the asked change is in the new picture, "preserved" = everything else is as it was.
  Two diagnostics split the failures: "reply right" (the reply is a phrasing of the expected one,
  `edits.Edit.replies`: it names the thing the edit changes and how; additions left out) and
  "follows right reply" (changed and preserved, over the cases whose reply is right). Each case
  keeps the scenes before, asked for and read from the new picture, so a failure shows what was drawn.
- plural edits: the editing part's grading on edits of several shapes at once and of size, in
  turn — "add two red circles", "make the squares blue", "remove all the stars", "remove one of
  them", "make it bigger".
- questions: a picture (given by the user, or drawn earlier) and a question, every kind in turn
  (colour, shape, count, position, word, is-there, is-it-colour, background, description,
  what-is-there, where-are-they); exact answers, also over the user's pictures alone and by kind.
- questions after edits: a conversation of 2-5 edits (each picture its exact codes, as if drawn
  perfectly), then a question about what the last edit changed — the colour after a recolour, the
  count after an add or a removal, the place after a move; the answer is only in the latest
  picture, and is graded against what the judge reads there.
- variations: a picture, then "another one like this": same shapes, colours, sizes, background
  and sign, in a new layout.
- words: signs drawn (a sign prompt; "exact" = the judge reads the word as asked, every letter)
  and read ("what does the sign say?" and its kin about a picture with a sign, half of them the
  user's own picture; the answer must be the word the judge reads in that picture).
- no picture ("nopic"): a question as a chat's first message, with no picture to read; "said so" =
  the reply draws nothing and says there is no picture yet (`conversation.NO_PICTURE_REPLY`).
- small talk ("smalltalk"): a greeting as a chat's first message, thanks or praise after a picture,
  a goodbye; "replied" = the reply draws nothing and is small talk's own line for that kind
  (`conversation.SMALL_TALK_REPLIES`), so the picture talked about stays the latest.

Every case records its message's `unseen_words` (words no training message uses, `vocabulary.py`),
and each part is scored again over the cases without such words ("known words") and with them
("new words"): a held-out phrasing of known words tests understanding, a word never seen tests
language the world cannot teach.

    mmgen eval                       # 50 cases per category, prints a table, writes runs/eval.json
    mmgen eval --n 10 --parts gen    # quicker
    mmgen eval --split paraphrase    # held-out phrasings in known words only (world/paraphrases.py)
    mmgen eval --typos               # every message with a typing slip ("make the star yelow")
    mmgen eval --split train         # diagnostic: the training phrasings (fresh scenes from their streams),
                                     # so the gap to the default shows what unseen wording costs
"""
from __future__ import annotations

import argparse
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

from ..inputs import MAX_SEED, SessionError
from ..oneshot import one_line_errors, seed_option, unwritable
from ..settings import Settings
from ..world.edits import PLURAL_KINDS
from ..world.typos import misspell
from .vocabulary import unseen_words

GEN_CATEGORIES = ("single_object", "two_objects", "counting", "count_and_other", "colors", "position",
                  "color_attribution", "sign")
PARTS = ("gen", "edit", "plural", "ask", "chain", "var", "words", "nopic", "smalltalk")
SPLITS = ("eval", "paraphrase", "train")
SEED_SALT = {"gen": 0, "edit": 1, "ask": 2, "var": 3, "words": 4, "plural": 5, "chain": 6, "nopic": 7,
             "smalltalk": 8}
KIND_TRIES = 20   # prompts tried for a case's edit or question kind (each part samples from its own seeds)


def add_arguments(p: argparse.ArgumentParser) -> None:
    one_line_errors(p)
    p.add_argument("--n", type=int, default=50, help="cases per category (and per part)")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    p.add_argument("--checkpoints", default=None, help="checkpoints folder (default: the shipped one)")
    p.add_argument("--out", default="runs/eval.json", help="where to write the JSON results")
    p.add_argument("--seed", type=seed_option, default=0, help="sampling seed (each case i draws with seed + i)")
    p.add_argument("--split", choices=SPLITS, default="eval",
                   help="eval: held-out scenes and phrasings (the figures to quote); paraphrase: held-out "
                        "scenes and phrasings made only of words training uses (new wording, no new words); "
                        "train: the training phrasings and scene streams, a diagnostic of what unseen wording costs")
    p.add_argument("--cfg", type=float, default=None, help="guidance scale (default: the session's)")
    p.add_argument("--word-cfg", type=float, default=None,
                   help="guidance scale of the reply's words (default: the session's)")
    p.add_argument("--temperature", type=float, default=None, help="picture-code temperature (default: the session's)")
    p.add_argument("--top-k", type=int, default=None, help="keep the k likeliest picture codes (default: the session's)")
    p.add_argument("--word-temperature", type=float, default=None,
                   help="temperature of the reply's words, 0 = greedy (default: the session's)")
    p.add_argument("--guide-reply", action=argparse.BooleanOptionalAction, default=None,
                   help="guidance's unconditional twin reads neither the request nor the reply's words "
                        "(default: the session's)")
    p.add_argument("--device", default=None)
    p.add_argument("--weights", choices=["native", "int8", "fp16"], default=None,
                   help="how the decoding engine holds the transformer's weights (default: what load picks)")
    p.add_argument("--refine", action=argparse.BooleanOptionalAction, default=None,
                   help="clean pictures with the shipped refiner before judging (default: the session's)")
    p.add_argument("--save-images", default=None, help="folder to save every generated picture")
    p.add_argument("--typos", action="store_true",
                   help="send every message with a typing slip in one word (world.typos: \"yelow\"), seeded "
                        "by the message; compare with the clean run: python -m mmgen.eval.compare")


# --- typing slips (--typos) ------------------------------------------------------------------------
class Typing:
    """The model, with every message its chats send misspelt (`world.typos.misspell`, seeded by the
    message, so a case is the same slip in every run). The cases record the clean message."""

    def __init__(self, model):
        self._model = model

    def __getattr__(self, name):
        return getattr(self._model, name)

    def chat(self, **settings):
        return _TypingChat(self._model.chat(**settings))


class _TypingChat:
    def __init__(self, chat):
        object.__setattr__(self, "_chat", chat)

    def __getattr__(self, name):
        return getattr(self._chat, name)

    def __setattr__(self, name, value):       # chat.conversation = … reaches the session itself
        setattr(self._chat, name, value)

    def send(self, text: str, **kwargs):
        return self._chat.send(misspell(text, random.Random(text)), **kwargs)


# --- grading helpers --------------------------------------------------------------------------
def normalise_answer(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower()).strip()


_COLOR_ASKED = re.compile(r"\b([a-z]+)\s*\?")       # a colour check's "purple?": the colour asked, repeated


def yes_no_parts(answer: str) -> tuple[str | None, str, str | None]:
    """(colour asked repeated or None, evidence, yes/no or None) of a yes/no answer, whatever the order
    of its parts: "it's orange — purple? no" and "purple? it's orange, so no" → ("purple", "its
    orange", "no"); "two, so yes" and "I see two, so yes" → (None, "two", "yes"); "yes" → (None, "", "yes").
    The evidence of "is there …?" is its count, said bare or after "I see" (the form before the count
    came first): the two grade alike."""
    from ..world.questions import NO, YES
    text = answer.lower().rstrip(" ?!.")              # "…, so no?" ends with its verdict, not a colour asked
    asked = _COLOR_ASKED.search(text)
    if asked is not None:
        text = text[:asked.start()] + " " + text[asked.end():]
    words = re.sub(r"[^a-z0-9 ]", " ", re.sub(r"['’]", "", text)).split()
    said = words.pop() if words and words[-1] in (YES, NO) else None
    if words and words[-1] == "so":
        words.pop()
    if words[:2] == ["i", "see"] and len(words) > 2:     # "I see, so yes" keeps its empty "i see"
        words = words[2:]
    return (asked[1] if asked else None), " ".join(words), said


def answers_match(reply: str, truth: str, kind: str) -> bool:
    """A reply is right when it says the truth word for word. A yes/no question about the shapes
    (`YES_NO_QUESTIONS`) is right when its yes or no is the truth's and the evidence ("it's orange",
    "I see two") and the colour asked ("purple?"), where the reply gives them, are the truth's too, in
    any order: checkpoints that wrote "purple? it's orange, so no" or a bare "no" grade alike. A count,
    "is there …?" or "where are the …?" reply is graded after its walk through the shapes, if it walked
    (`questions.final_answer`)."""
    from ..world.questions import YES_NO_QUESTIONS, final_answer
    reply, truth = final_answer(reply, kind), final_answer(truth, kind)
    if kind in YES_NO_QUESTIONS:
        (said_asked, said_evidence, said), (true_asked, true_evidence, true) = yes_no_parts(reply), yes_no_parts(truth)
        return (said is not None and said == true and said_evidence in ("", true_evidence)
                and said_asked in (None, true_asked))
    return normalise_answer(reply) == normalise_answer(truth)


# additions whose place (or a sign's colours) the user may leave open: the reply's choice need not be the data's
OPEN_REPLY_KINDS = ("add", "add_many", "add_sign")


def edit_reply_right(edit, said: str) -> bool | None:
    """Whether an edit's reply names what the edit changes and how: it is one of the phrasings of
    the expected reply (`Edit.replies`), whichever the model picked. None for an addition
    (`OPEN_REPLY_KINDS`), where another free place is as right as the data's."""
    if edit.record["kind"] in OPEN_REPLY_KINDS:
        return None
    return said.strip() in edit.replies()


def _object_key(o: dict) -> tuple:
    return (o["shape"], o["color"], o["size"])


def grade_edit(record: dict, before: dict, expected: dict, found: dict) -> dict:
    """{"changed": bool, "preserved": bool} for one edit, from judge readings (scene dicts)."""
    from .judge import compare
    kind, target = record["kind"], record["target"]
    found_by_cell = {o["cell"]: o for o in found["objects"]}
    # what the edit is allowed to touch, and the check that it happened
    touched_cells: set[str] = set()
    sign_touched = kind in ("word", "add_sign", "remove_sign", "plaque", "move_sign") or \
        (kind == "recolor" and target == "sign")
    if kind in ("recolor", "resize") and target != "sign":
        new = expected["objects"][target]
        touched_cells.add(new["cell"])
        f = found_by_cell.get(new["cell"])
        changed = f is not None and _object_key(f) == _object_key(new) and f["cell"] == new["cell"]
    elif kind == "recolor":
        changed = found["sign"] is not None and found["sign"]["color"] == expected["sign"]["color"]
    elif kind == "move":
        old, new = before["objects"][target], record["after"]
        moved_to = new if isinstance(new, str) else new.get("cell")
        touched_cells |= {old["cell"], moved_to}
        f = found_by_cell.get(moved_to)
        changed = f is not None and _object_key(f) == _object_key(old) and old["cell"] not in found_by_cell
    elif kind == "add":
        asked = record.get("asked") or {}
        new = expected["objects"][target]
        new_cells = [c for c in found_by_cell if c not in {o["cell"] for o in before["objects"]}]
        touched_cells |= set(new_cells) | {new["cell"]}
        changed = any(all(asked.get(a) in (None, found_by_cell[c][a]) for a in ("shape", "color", "size"))
                      and asked.get("cell") in (None, c) for c in new_cells) and len(new_cells) == 1
    elif kind == "remove":
        gone = before["objects"][target]["cell"]
        touched_cells.add(gone)
        changed = gone not in found_by_cell
    elif kind == "add_many":
        asked = record.get("asked") or {}
        new_cells = [c for c in found_by_cell if c not in {o["cell"] for o in before["objects"]}]
        touched_cells |= set(new_cells) | {o["cell"] for o in record["after"]}
        changed = len(new_cells) == asked["count"] and all(
            all(asked.get(a) in (None, found_by_cell[c][a]) for a in ("shape", "color", "size")) for c in new_cells)
    elif kind in ("recolor_group", "remove_group"):
        cells = [before["objects"][i]["cell"] for i in target]
        touched_cells |= set(cells)
        if kind == "remove_group":
            changed = not any(c in found_by_cell for c in cells)
        else:
            changed = all(c in found_by_cell and _object_key(found_by_cell[c]) ==
                          _object_key({**before["objects"][i], "color": record["after"]}) for i, c in zip(target, cells))
    elif kind == "remove_one":
        # any one of the group may go; the others stay as they were
        cells = [before["objects"][i]["cell"] for i in record["asked"]["members"]]
        touched_cells |= set(cells)
        kept = [c for c in cells if c in found_by_cell]
        changed = len(kept) == len(cells) - 1 and all(
            _object_key(found_by_cell[c]) == _object_key(o) for o in before["objects"] for c in kept if o["cell"] == c)
    elif kind == "background":
        changed = found["background"] == expected["background"]
    elif kind == "word":
        changed = found["sign"] is not None and found["sign"]["word"] == expected["sign"]["word"]
    elif kind in ("plaque", "move_sign"):
        attr = record["attribute"]
        fs = found["sign"]
        # the attribute changed, and the rest of the sign kept
        changed = fs is not None and fs == {**before["sign"], attr: expected["sign"][attr]}
    elif kind == "add_sign":
        asked = record.get("asked") or {}
        fs = found["sign"]
        changed = fs is not None and all(v is None or fs.get(k) == v for k, v in asked.items())
    elif kind == "remove_sign":
        changed = found["sign"] is None
    else:
        raise ValueError(f"unknown edit kind {kind!r}")
    # everything else: untouched objects exactly as before, background and sign unless edited
    rest = {"background": before["background"] if kind != "background" else found["background"],
            "objects": [o for o in before["objects"] if o["cell"] not in touched_cells],
            "sign": before["sign"] if not sign_touched else None}
    found_rest = {"background": found["background"],
                  "objects": [o for o in found["objects"] if o["cell"] not in touched_cells],
                  "sign": found["sign"] if not sign_touched else None}
    preserved = compare(rest, found_rest)["exact"]
    return {"changed": bool(changed), "preserved": bool(preserved)}


VARIATION_CHECKS = ("same_things", "new_layout", "background", "sign")


def variation_checks(source: dict, found: dict) -> dict:
    """Which parts of "another one like this" held (`VARIATION_CHECKS`): the same things (shape,
    colour, size, each as many times), a layout that differs, the same background and the same sign."""
    things = [Counter(map(_object_key, d["objects"])) for d in (source, found)]
    layouts = [{(o["cell"],) + _object_key(o) for o in d["objects"]} for d in (source, found)]
    held = (things[0] == things[1], layouts[0] != layouts[1],
            source["background"] == found["background"], source["sign"] == found["sign"])
    return dict(zip(VARIATION_CHECKS, held))


# --- the parts ---------------------------------------------------------------------------
def _session_with_picture(model, seed: int, user_text: str, reply: str, scene, settings: dict):
    """A chat whose last assistant turn shows `scene` (its exact VQ codes)."""
    from ..stream import Conversation, Turn
    from ..world import render
    chat = model.chat(seed=seed, **settings)
    codes = tuple(model.vq.encode(render(scene))[0].reshape(-1).tolist())
    chat.conversation = Conversation((Turn("user", user_text), Turn("assistant", reply, codes)))
    return chat


def run_generation(model, n: int, seed: int, settings: dict, save=None, split: str = "eval") -> dict:
    from ..world.language import read_description
    from ..world.prompts import prompt_for, spec_matches
    from .judge import compare, judge
    results = {}
    for category in GEN_CATEGORIES:
        cases = []
        for i in range(n):
            p = prompt_for(i, category, split)
            reply = model.chat(seed=seed + i, **settings).send(p.text)
            found = judge(reply.image) if reply.image is not None else None
            checks = spec_matches(p.spec, found) if found is not None else {"picture": False}
            # the reply's layout plan (prompts.CREATE_REPLIES), graded apart from the picture, so a
            # failure shows whether the words went wrong or the drawing did
            plan = read_description(reply.text)
            cases.append({"prompt": p.text, "unseen_words": unseen_words(p.text),
                          "passed": all(checks.values()), "checks": checks, "found": found,
                          "reply": reply.text, "plan": plan,
                          "plan_ok": plan is not None and all(spec_matches(p.spec, plan).values()),
                          "as_planned": None if plan is None or found is None else compare(plan, found)["exact"]})
            if save and reply.image is not None:
                reply.image.save(Path(save) / f"gen-{category}-{i:03d}.png")
        results[category] = cases
    return results


def _edit_case(edit, source, reply) -> dict:
    """One graded edit of the scene `source`: the request, the reply, and the scenes before, asked for
    and found (the judge's reading of the new picture, None without one), so a failure shows what was
    drawn instead."""
    from .judge import judge
    found = judge(reply.image) if reply.image is not None else None
    before, expected = source.to_dict(), edit.scene.to_dict()
    grade = grade_edit(edit.record, before, expected, found) if found else {"changed": False, "preserved": False}
    return {"instruction": edit.text, "unseen_words": unseen_words(edit.text), "kind": edit.record["kind"],
            "reply": reply.text, "expected_reply": edit.reply, "reply_right": edit_reply_right(edit, reply.text),
            **grade, "before": before, "expected": expected, "found": found}


def run_editing(model, n: int, seed: int, settings: dict, save=None, split: str = "eval") -> list[dict]:
    from ..world.edits import sample_edit
    from ..world.language import stream
    from ..world.prompts import prompt_for
    cases = []
    for i in range(n):
        p = prompt_for(i + 10_000 * SEED_SALT["edit"], "mixed", split)
        edit = sample_edit(p.scene, stream(split, i, "benchmark-edit"), split=split)
        if edit is None:
            continue
        reply = _session_with_picture(model, seed + i, p.text, p.reply, p.scene, settings).send(edit.text)
        cases.append(_edit_case(edit, p.scene, reply))
        if save and reply.image is not None:
            reply.image.save(Path(save) / f"edit-{i:03d}.png")
    return cases


def run_plural(model, n: int, seed: int, settings: dict, save=None, split: str = "eval") -> list[dict]:
    """The editing part's grading on PLURAL_KINDS in turn (a case that fits no such edit is skipped)."""
    from ..world.edits import sample_edit
    from ..world.language import stream
    from ..world.prompts import prompt_for
    cases = []
    for i in range(n):
        kind = PLURAL_KINDS[i % len(PLURAL_KINDS)]
        # the first of the case's prompts whose scene the edit fits (a group needs two shapes alike)
        for j in range(KIND_TRIES):
            p = prompt_for(i + 10_000 * SEED_SALT["plural"] + 1_000 * j, "mixed", split)
            tag = "benchmark-plural" + (f"-{j}" if j else "")
            edit = sample_edit(p.scene, stream(split, i, tag), split=split, kind=kind)
            if edit is not None:
                break
        if edit is None:
            continue
        reply = _session_with_picture(model, seed + i, p.text, p.reply, p.scene, settings).send(edit.text)
        cases.append(_edit_case(edit, p.scene, reply))
        if save and reply.image is not None:
            reply.image.save(Path(save) / f"plural-{i:03d}.png")
    return cases


def answer_from_reading(meta: dict, scene, found: dict) -> str:
    """The answer to a question (its `meta`: kind, about, answer) as the judge's reading `found` of
    the picture gives it; the object a question names is the one in its cell of `scene`."""
    from ..world.language import canonical_object
    from ..world.questions import EMPTY_CELL_ANSWER, NO, YES, count_answer, locate_answer
    from ..world.scene import Scene
    kind, about = meta["question"], meta["about"]
    by_cell = {o["cell"]: o for o in found["objects"]}
    if kind == "count":
        return count_answer(sum(about["shape"] in (None, o["shape"]) and about["color"] in (None, o["color"])
                                for o in found["objects"]))
    if kind in ("color", "position") and isinstance(about.get("target"), int):
        o = by_cell.get(scene.objects[about["target"]].cell)
        return "" if o is None else (o["color"] if kind == "color" else o["cell"])
    if kind == "what_at":
        o = by_cell.get(about["cell"])
        return EMPTY_CELL_ANSWER if o is None else canonical_object(o)
    if kind == "background":
        return found["background"]
    if kind == "locate":
        return locate_answer(Scene.from_dict(found), about["shape"], about["color"])
    if kind == "word":
        return (found["sign"] or {}).get("word") or ""
    if kind == "exists" and about.get("sign"):
        return YES if found["sign"] is not None else NO
    return meta["answer"]


def run_chains(model, n: int, seed: int, settings: dict, split: str = "eval") -> list[dict]:
    """Questions after edits: an edit chain's turns as given (exact pictures), then its last question."""
    from ..stream import Conversation, Turn
    from ..world import render
    from ..world.conversation import sample_chain
    from .judge import judge
    cases = []
    for i in range(n):
        c = sample_chain(i + 10_000 * SEED_SALT["chain"], split)
        *before, question, _ = c.turns
        chat = model.chat(seed=seed + i, **settings)
        turns = []
        for t in before:
            codes = None if t.image is None else tuple(model.vq.encode(render(t.image))[0].reshape(-1).tolist())
            turns.append(Turn(t.role, t.text, codes))
        chat.conversation = Conversation(tuple(turns))
        latest = [t.image for t in before if t.image is not None][-1]
        truth = answer_from_reading(question.meta, latest, judge(render(latest)))
        reply = chat.send(question.text, picture="never")
        edits = [t.meta["edit"]["kind"] for t in before if t.role == "user" and "edit" in t.meta]
        cases.append({"question": question.text, "unseen_words": unseen_words(question.text),
                      "kind": question.meta["question"], "after": edits[-1] if edits else None, "edits": len(edits),
                      "expected": truth, "answer": reply.text,
                      "passed": answers_match(reply.text, truth, question.meta["question"])})
    return cases


def question_case(i: int, part: str, split: str):
    """Case i's (prompt, question) of the question `part` ("ask", "nopic"): every kind in turn,
    whatever the training mix weighs them, asked of the first of the case's prompts the kind fits
    ("what does the sign say?" needs a sign); None when none does."""
    from ..world.language import stream
    from ..world.prompts import prompt_for
    from ..world.questions import QUESTION_KINDS, sample_question
    kind = QUESTION_KINDS[i % len(QUESTION_KINDS)]
    for j in range(KIND_TRIES):
        p = prompt_for(i + 10_000 * SEED_SALT[part] + 1_000 * j, "mixed", split)
        q = sample_question(p.scene, stream(split, i, f"benchmark-{part}" + (f"-{j}" if j else "")), split, kind)
        if q is not None:
            return p, q
    return None


def run_questions(model, n: int, seed: int, settings: dict, split: str = "eval") -> list[dict]:
    from ..world import render
    cases = []
    for i in range(n):
        got = question_case(i, "ask", split)
        if got is None:
            continue
        p, q = got
        if i % 2 == 0:      # a picture the user brings
            reply = model.chat(seed=seed + i, **settings).send(q.text, image=render(p.scene), picture="never")
        else:               # the picture drawn earlier in the chat
            reply = _session_with_picture(model, seed + i, p.text, p.reply, p.scene, settings).send(
                q.text, picture="never")
        ok = answers_match(reply.text, q.answer, q.kind)
        cases.append({"question": q.text, "unseen_words": unseen_words(q.text), "kind": q.kind,
                      "expected": q.answer, "answer": reply.text, "passed": ok, "user_picture": i % 2 == 0})
    return cases


def run_no_picture(model, n: int, seed: int, settings: dict, split: str = "eval") -> list[dict]:
    """Questions asked as a chat's first message, with no picture to read: passed when the reply draws
    nothing and says there is no picture (world.conversation.NO_PICTURE_REPLY)."""
    from ..world.conversation import NO_PICTURE_REPLY
    cases = []
    for i in range(n):
        got = question_case(i, "nopic", split)
        if got is None:
            continue
        q = got[1]
        reply = model.chat(seed=seed + i, **settings).send(q.text)
        cases.append({"question": q.text, "unseen_words": unseen_words(q.text), "kind": q.kind, "answer": reply.text,
                      "drew": reply.image is not None,
                      "passed": reply.image is None and reply.text.strip() == NO_PICTURE_REPLY})
    return cases


def run_small_talk(model, n: int, seed: int, settings: dict, split: str = "eval") -> list[dict]:
    """Small talk, each kind in turn: a greeting as a chat's first message, thanks or praise after a
    picture drawn earlier, a goodbye after it; passed when the reply draws nothing and is that kind's
    line (world.conversation.SMALL_TALK_REPLIES)."""
    from ..world.conversation import SMALL_TALK, SMALL_TALK_REPLIES
    from ..world.language import stream
    from ..world.prompts import prompt_for
    cases = []
    for i in range(n):
        kind = tuple(SMALL_TALK)[i % len(SMALL_TALK)]
        text = SMALL_TALK[kind].pick(stream(split, i, "benchmark-smalltalk"), split)
        if kind == "greeting":
            chat = model.chat(seed=seed + i, **settings)
        else:
            p = prompt_for(i + 10_000 * SEED_SALT["smalltalk"], "mixed", split)
            chat = _session_with_picture(model, seed + i, p.text, p.reply, p.scene, settings)
        reply = chat.send(text)
        cases.append({"message": text, "unseen_words": unseen_words(text), "kind": kind, "answer": reply.text,
                      "drew": reply.image is not None,
                      "passed": reply.image is None and reply.text.strip() == SMALL_TALK_REPLIES[kind]})
    return cases


def run_words(model, n: int, seed: int, settings: dict, save=None, split: str = "eval") -> dict:
    """Signs drawn (word exact, as the judge reads it) and read (the word asked about)."""
    from ..world import render
    from ..world.language import stream
    from ..world.prompts import prompt_for
    from ..world.questions import sample_question
    from .judge import judge
    drawn, read = [], []
    for i in range(n):
        p = prompt_for(i + 10_000 * SEED_SALT["words"], "sign", split)
        reply = model.chat(seed=seed + i, **settings).send(p.text)
        found = judge(reply.image) if reply.image is not None else None
        got = (found or {}).get("sign") or {}
        drawn.append({"prompt": p.text, "unseen_words": unseen_words(p.text), "expected": p.spec["sign"]["word"],
                      "drawn": got.get("word"), "passed": got.get("word") == p.spec["sign"]["word"]})
        if save and reply.image is not None:
            reply.image.save(Path(save) / f"words-{i:03d}.png")
        q = sample_question(p.scene, stream(split, i, "benchmark-words"), split=split, kind="word")
        # the answer is graded against what the judge reads in the picture asked about
        truth = (judge(render(p.scene))["sign"] or {}).get("word")
        if i % 2 == 0:
            answer = model.chat(seed=seed + i, **settings).send(q.text, image=render(p.scene), picture="never")
        else:
            answer = _session_with_picture(model, seed + i, p.text, p.reply, p.scene, settings).send(
                q.text, picture="never")
        read.append({"question": q.text, "unseen_words": unseen_words(q.text), "expected": truth,
                     "answer": answer.text, "user_picture": i % 2 == 0,
                     "passed": truth is not None and answers_match(answer.text, truth, "word")})
    return {"drawn": drawn, "read": read}


def run_variations(model, n: int, seed: int, settings: dict, split: str = "eval") -> list[dict]:
    from ..world.conversation import VARIATION
    from ..world.language import stream
    from ..world.prompts import prompt_for
    from .judge import judge
    cases = []
    for i in range(n):
        p = prompt_for(i + 10_000 * SEED_SALT["var"], "mixed", split)
        if not p.scene.objects:
            continue
        text = VARIATION.pick(stream(split, i, "benchmark-var"), split)
        reply = _session_with_picture(model, seed + i, p.text, p.reply, p.scene, settings).send(text)
        found = judge(reply.image) if reply.image is not None else None
        source = p.scene.to_dict()
        checks = variation_checks(source, found) if found is not None else {"picture": False}
        cases.append({"instruction": text, "unseen_words": unseen_words(text), "passed": all(checks.values()),
                      "checks": checks, "source": source, "found": found, "reply": reply.text})
    return cases


def by_words(cases: list[dict], passed) -> dict:
    """`passed` (a case → bool) over the cases whose message has only known words, and over the rest."""
    out = {}
    for name, subset in (("known_words", [c for c in cases if not c.get("unseen_words")]),
                         ("new_words", [c for c in cases if c.get("unseen_words")])):
        out[name] = sum(bool(passed(c)) for c in subset) / len(subset) if subset else None
        out[f"{name}_cases"] = len(subset)
    return out


def _share(passed) -> float | None:
    passed = [bool(p) for p in passed]
    return sum(passed) / len(passed) if passed else None


def reply_split(cases: list[dict]) -> dict:
    """Edit failures split like generation's plan and picture: "reply right" (the reply names the
    thing the edit changes and how, `edit_reply_right`; additions left out) and "follows right
    reply" (the change made and the rest preserved, over the cases whose reply is right)."""
    right = [c for c in cases if c.get("reply_right")]
    return {"reply_right": _share(c["reply_right"] for c in cases if c.get("reply_right") is not None),
            "follows_right_reply": _share(c["changed"] and c["preserved"] for c in right)}


def summarise(results: dict) -> dict:
    from ..world.questions import QUESTION_KINDS
    s = {}
    if "gen" in results:
        per = {c: sum(x["passed"] for x in cases) / max(1, len(cases)) for c, cases in results["gen"].items()}
        s["generation"] = {**per, "overall": sum(per.values()) / max(1, len(per))}
        signs = results["gen"].get("sign", [])
        s["generation"]["sign_words"] = sum(bool(x["checks"].get("sign_word")) for x in signs) / max(1, len(signs))
        every = [x for cases in results["gen"].values() for x in cases]
        drawn = [x["as_planned"] for x in every if x.get("as_planned") is not None]
        s["generation"]["plan_matches_prompt"] = sum(bool(x.get("plan_ok")) for x in every) / max(1, len(every))
        s["generation"]["picture_matches_plan"] = sum(drawn) / max(1, len(drawn))
        s["generation"].update(by_words(every, lambda c: c["passed"]))
    if "edit" in results:
        cases = results["edit"]
        s["editing"] = {"changed": sum(c["changed"] for c in cases) / max(1, len(cases)),
                        "preserved": sum(c["preserved"] for c in cases) / max(1, len(cases)), "cases": len(cases),
                        **reply_split(cases), **by_words(cases, lambda c: c["changed"])}
    if "plural" in results:
        cases = results["plural"]
        s["plural_edits"] = {"changed": sum(c["changed"] for c in cases) / max(1, len(cases)),
                             "preserved": sum(c["preserved"] for c in cases) / max(1, len(cases)), "cases": len(cases),
                             **{f"changed_{k}": _share(c["changed"] for c in cases if c["kind"] == k)
                                for k in PLURAL_KINDS}, **reply_split(cases), **by_words(cases, lambda c: c["changed"])}
    if "ask" in results:
        cases = results["ask"]
        s["questions"] = {"exact": sum(c["passed"] for c in cases) / max(1, len(cases)), "cases": len(cases),
                          "user_picture": _share(c["passed"] for c in cases if c.get("user_picture")),
                          **{f"exact_{k}": _share(c["passed"] for c in cases if c["kind"] == k)
                             for k in QUESTION_KINDS if any(c["kind"] == k for c in cases)},
                          **by_words(cases, lambda c: c["passed"])}
    if "chain" in results:
        cases = results["chain"]
        s["after_edits"] = {"exact": _share(c["passed"] for c in cases), "cases": len(cases),
                            **{f"exact_{k}": _share(c["passed"] for c in cases if c["kind"] == k)
                               for k in ("count", "color", "position")}, **by_words(cases, lambda c: c["passed"])}
    if "words" in results:
        drawn, read = results["words"]["drawn"], results["words"]["read"]
        s["words"] = {"drawn_exact": sum(c["passed"] for c in drawn) / max(1, len(drawn)),
                      "read_exact": sum(c["passed"] for c in read) / max(1, len(read)),
                      "read_user_picture": sum(c["passed"] for c in read if c["user_picture"])
                      / max(1, sum(c["user_picture"] for c in read)),
                      "cases": len(drawn), **by_words(drawn, lambda c: c["passed"])}
    if "nopic" in results:
        cases = results["nopic"]
        s["no_picture"] = {"said_so": _share(c["passed"] for c in cases), "drew": _share(c["drew"] for c in cases),
                           "cases": len(cases), **by_words(cases, lambda c: c["passed"])}
    if "smalltalk" in results:
        from ..world.conversation import SMALL_TALK_REPLIES
        cases = results["smalltalk"]
        s["small_talk"] = {"replied": _share(c["passed"] for c in cases), "drew": _share(c["drew"] for c in cases),
                           "cases": len(cases), **{f"replied_{k}": _share(c["passed"] for c in cases if c["kind"] == k)
                                                   for k in SMALL_TALK_REPLIES},
                           **by_words(cases, lambda c: c["passed"])}
    if "var" in results:
        cases = results["var"]
        s["variations"] = {"passed": sum(c["passed"] for c in cases) / max(1, len(cases)), "cases": len(cases),
                           **{f"held_{k}": _share(c["checks"].get(k, False) for c in cases)
                              for k in VARIATION_CHECKS},
                           **by_words(cases, lambda c: c["passed"])}
    return s


def format_table(summary: dict) -> str:
    lines = [f"{'part':<12} {'metric':<20} {'score':>6}", "-" * 40]
    for part, metrics in summary.items():
        for name, value in metrics.items():
            shown = f"{value:6.3f}" if isinstance(value, float) else f"{'-' if value is None else value:>6}"
            lines.append(f"{part:<12} {name:<20} {shown}")
    return "\n".join(lines)


def run_settings(args) -> dict:
    """The session settings the options give (those left out keep the session's defaults)."""
    settings = {k: getattr(args, k) for k in ("cfg", "word_cfg", "temperature", "word_temperature", "top_k",
                                              "guide_reply") if getattr(args, k) is not None}
    if args.refine is not None:
        settings["refine"] = args.refine
    return settings


def results_problem(path: str) -> str | None:
    """What keeps the results from being written to `path` (None: nothing): not a folder, and a
    folder above that we may write in (oneshot.unwritable)."""
    out = Path(path)
    if out.is_dir():
        return f"--out {out} is a folder; give a file name such as {out / 'eval.json'}"
    return unwritable(out)


def argument_problem(args, parts: list[str]) -> str | None:
    """What is wrong with the options (None: nothing), found before the model loads and the run
    starts: a bad setting or --out found after the run would cost the run."""
    from ..hardware import device_problem
    unknown = set(parts) - set(PARTS)
    if unknown:
        return f"unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}"
    if args.seed + args.n - 1 > MAX_SEED:          # case i draws with seed + i
        return f"--seed {args.seed} leaves no room for {args.n} cases below {MAX_SEED}"
    try:
        Settings(**run_settings(args))
    except SessionError as e:
        return str(e)
    if args.save_images:
        folder = Path(args.save_images)
        if folder.exists() and not folder.is_dir():
            return f"--save-images {folder} is a file; give a folder"
        problem = None if folder.is_dir() else unwritable(folder)
        if problem:
            return f"--save-images: {problem}"
    return results_problem(args.out) or device_problem(args.device)


def run(args) -> int:
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    problem = argument_problem(args, parts)
    if problem is not None:
        print(f"mmgen eval: {problem}", file=sys.stderr)
        return 2
    import torch

    from ..pipeline import load
    torch.set_num_threads(max(1, torch.get_num_threads()))
    try:
        model = load(args.checkpoints, device=args.device, weights=args.weights)
    except (ValueError, OSError) as e:          # no folder there, a damaged or mismatched checkpoint
        print(f"mmgen eval: {e}", file=sys.stderr)
        return 2
    settings = run_settings(args)
    if args.save_images:
        Path(args.save_images).mkdir(parents=True, exist_ok=True)
    if args.typos:
        model = Typing(model)
    t0 = time.time()
    results = {}
    if "gen" in parts:
        results["gen"] = run_generation(model, args.n, args.seed, settings, args.save_images, args.split)
    if "edit" in parts:
        results["edit"] = run_editing(model, args.n, args.seed, settings, args.save_images, args.split)
    if "plural" in parts:
        results["plural"] = run_plural(model, args.n, args.seed, settings, args.save_images, args.split)
    if "ask" in parts:
        results["ask"] = run_questions(model, args.n, args.seed, settings, args.split)
    if "chain" in parts:
        results["chain"] = run_chains(model, args.n, args.seed, settings, args.split)
    if "var" in parts:
        results["var"] = run_variations(model, args.n, args.seed, settings, args.split)
    if "nopic" in parts:
        results["nopic"] = run_no_picture(model, args.n, args.seed, settings, args.split)
    if "smalltalk" in parts:
        results["smalltalk"] = run_small_talk(model, args.n, args.seed, settings, args.split)
    if "words" in parts:
        results["words"] = run_words(model, args.n, args.seed, settings, args.save_images, args.split)
    summary = summarise(results)
    print(format_table(summary))
    print(f"({time.time() - t0:.0f} s, {args.n} cases per category, {args.split} split"
          f"{', a typing slip in every message' if args.typos else ''})")
    out = Path(args.out)
    from ..io import atomic_write_json
    atomic_write_json(out, {"summary": summary, "n": args.n, "seed": args.seed, "split": args.split,
                            "typos": args.typos, "checkpoints": str(args.checkpoints or "shipped"), "results": results})
    print(f"wrote {out}")
    return 0
