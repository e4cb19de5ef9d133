"""The neighbour table: its neighbourhoods, back-off, files, distillation, and use as a drafter."""
from __future__ import annotations

import json
import random
from collections import Counter

import pytest
import torch

from mmgen.cli import main as cli
from mmgen.neighbours import UNSEEN_CONFIDENCE, NeighbourTable, fit, is_neighbour_table, neighbourhood
from mmgen.sampling import SamplingConfig
from mmgen.speculative import image_probs
from mmgen.stream import IMAGE_SIDE, IMAGE_TOKENS, Conversation, Turn


def test_neighbourhood_at_the_edges():
    codes = list(range(100, 100 + IMAGE_TOKENS))
    assert neighbourhood(codes, 0) == (-1, -1, -1)
    assert neighbourhood(codes, 15) == (-1, 114, -1)                 # top row: only the left
    assert neighbourhood(codes, 16) == (100, -1, 101)                # left edge: nothing to the left
    assert neighbourhood(codes, 31) == (115, 130, -1)                # right edge: nothing above-right
    assert neighbourhood(codes, 17) == (101, 116, 102)


def test_draft_backs_off_from_the_widest_neighbourhood():
    table = NeighbourTable(64, [{(1, 2, 3): 10}, {(1, 2): 20}, {(1,): 30}])
    row = [0] * (IMAGE_SIDE + 1)                      # the codes before position 17
    def at(above, left, above_right):
        codes = list(row)
        codes[1], codes[2] = above, above_right      # position 17's above and above-right
        codes[16] = left
        return table.draft(codes, 17)
    assert at(1, 2, 3) == 10
    assert at(1, 2, 4) == 20          # no (1, 2, 4): back off to (above, left)
    assert at(1, 5, 3) == 30          # nor (1, 5): to (above)
    assert at(7, 5, 3) == 7           # nothing known: the code above
    assert table.draft([9], 1) == 9   # top row, nothing known: the code to the left


def test_save_and_load_round_trip(tmp_path):
    table = NeighbourTable(64, [{(1, 2, 3): 10, (-1, 4, -1): 11}, {(1, 2): 20}, {(1,): 30, (-1,): 5}],
                           {"pictures": 2}, words=[{(7, 8, 9): 10}, {(8, 9): 11, (1, 2): 3}, {(9,): 12}])
    table.save(tmp_path / "draft")
    assert is_neighbour_table(tmp_path / "draft") and not is_neighbour_table(tmp_path)
    loaded = NeighbourTable.load(tmp_path / "draft")
    assert loaded.levels == table.levels and loaded.codebook_size == 64 and loaded.info == {"pictures": 2}
    assert loaded.words == table.words
    assert not list(tmp_path.glob(".draft*")), "temporary folders are cleaned up"


def test_confidences_round_trip_and_older_tables_load_without(tmp_path):
    levels = [{(1, 2, 3): 10}, {(1, 2): 20}, {(1,): 30}]
    table = NeighbourTable(64, levels, confidence=[{(1, 2, 3): 0.9}, {(1, 2): 0.5}, {(1,): 0.25}])
    codes = [0] * (IMAGE_SIDE + 1)
    codes[1], codes[2], codes[16] = 1, 3, 2                      # position 17: above 1, above-right 3, left 2
    assert table.draft_with_confidence(codes, 17) == (10, 0.9)
    codes[2] = 4                                                 # backs off to (above, left)
    assert table.draft_with_confidence(codes, 17) == (20, 0.5)
    codes[1] = 7                                                 # nothing known: a guess nothing voted for
    assert table.draft_with_confidence(codes, 17) == (7, UNSEEN_CONFIDENCE)
    table.save(tmp_path / "with")
    loaded = NeighbourTable.load(tmp_path / "with").confidence
    assert [pytest.approx(c) for c in table.confidence] == loaded      # stored as float32
    NeighbourTable(64, levels).save(tmp_path / "without")       # as tables were fitted before
    older = NeighbourTable.load(tmp_path / "without")
    assert older.confidence is None and older.draft_with_confidence(codes, 17) == (7, None)
    with pytest.raises(ValueError, match="cover exactly"):
        NeighbourTable(64, levels, confidence=[{}, {(1, 2): 0.5}, {(1,): 0.25}])


def test_load_refuses_what_is_not_a_table(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match="not a neighbour table"):
        NeighbourTable.load(tmp_path)
    NeighbourTable(4, [{(1, 2, 3): 3}, {}, {}]).save(tmp_path / "t")
    config = json.loads((tmp_path / "t" / "config.json").read_text())
    (tmp_path / "t" / "config.json").write_text(json.dumps({**config, "codebook_size": 2}))
    with pytest.raises(ValueError, match="malformed"):          # a code outside the book
        NeighbourTable.load(tmp_path / "t")


def test_word_table_drafts_a_reply_it_has_seen(tiny_stream):
    from mmgen.neighbours import fit_words
    stream = tiny_stream
    seen = Conversation((Turn("user", "draw a red circle"),
                         Turn("assistant", "Here you go: a red circle in the center.", (0,) * IMAGE_TOKENS),
                         Turn("user", "what colour is it?"), Turn("assistant", "red")))
    table = NeighbourTable(stream.codebook_size, [{}, {}, {}], words=fit_words(stream, [seen], count=1))
    stop = (stream.image_start, stream.eot)
    for turns in (seen.turns[:2], seen.turns):
        prompt = stream.encode(Conversation(turns[:-1]), generation_prompt=True).ids
        reply = stream.encode(Conversation(turns)).ids[len(prompt):]
        reply = reply[:min(reply.index(t) for t in stop if t in reply) + 1]     # its words and what ends them
        assert table.draft_words(prompt, 50, stop) == reply
        assert table.draft_words(prompt, 3, stop) == reply[:3]
    assert table.draft_words([10**6], 5) == []                                  # nothing known: no draft


def picture_conversations(stream, n, seed=0):
    rng = random.Random(seed)
    return [Conversation((Turn("user", "draw a red circle"),
                          Turn("assistant", "a red circle in the center",
                               tuple(rng.randrange(stream.codebook_size) for _ in range(IMAGE_TOKENS)))))
            for _ in range(n)]


def guided_argmax(lm, stream, conv, config):
    """The likeliest code at every position, the way generation would compute it (full logits)."""
    ids = stream.encode(conv).ids
    at = ids.index(stream.image_start)
    user = Conversation(conv.turns[:1])
    twin = stream.encode(user, generation_prompt=True, drop_last_user_text=True).ids
    reply = [] if config.guide_reply else ids[len(stream.encode(user, generation_prompt=True).ids):at]
    with torch.inference_mode():
        cond = lm(input_ids=torch.tensor([ids[:at + IMAGE_TOKENS]])).logits[:, at:]
        uncond_ids = twin + reply + ids[at:at + IMAGE_TOKENS]
        uncond = lm(input_ids=torch.tensor([uncond_ids])).logits[:, len(twin) + len(reply):]
        return image_probs(stream, torch.cat([cond, uncond]), 1, True, config)[0].argmax(-1) - stream.image_offset


@pytest.mark.parametrize("guide_reply", [True, False])
def test_fit_keeps_the_transformers_likeliest_code(tiny_lm, tiny_stream, guide_reply):
    """A neighbourhood seen once in random pictures has one position's vote: the guided
    distribution's top code there, as generation computes it."""
    config = SamplingConfig(temperature=0.6, cfg=2.0, guide_reply=guide_reply)
    convs = picture_conversations(tiny_stream, 3)
    questions = [Conversation((Turn("user", "what is it?"), Turn("assistant", "a circle")))]   # skipped
    table = fit(tiny_lm, tiny_stream, questions + convs, pictures=3, config=config, batch=2)
    assert table.info["pictures"] == 3
    seen = Counter(neighbourhood(c.turns[1].codes, pos) for c in convs for pos in range(IMAGE_TOKENS))
    checked = 0
    for conv in convs:
        codes = conv.turns[1].codes
        expected = guided_argmax(tiny_lm, tiny_stream, conv, config)
        for pos in range(IMAGE_TOKENS):
            key = neighbourhood(codes, pos)
            if seen[key] == 1:
                assert table.levels[0][key] == int(expected[pos]), pos
                # one position's vote: its top code's mass over its top codes' mass plus one
                assert 0 < table.confidence[0][key] < 0.5
                checked += 1
    assert checked > 500
    assert [set(c) for c in table.confidence] == [set(level) for level in table.levels]


def test_fit_stops_at_the_pictures_asked(tiny_lm, tiny_stream):
    table = fit(tiny_lm, tiny_stream, iter(picture_conversations(tiny_stream, 10)), pictures=5,
                config=SamplingConfig(), batch=4)
    assert table.info["pictures"] == 5
    with pytest.raises(ValueError, match="at least 1"):
        fit(tiny_lm, tiny_stream, [], pictures=0, config=SamplingConfig())


def test_train_draft_fits_a_table_and_the_pipeline_uses_it(tmp_path, tiny_checkpoints):
    import shutil

    import mmgen
    from mmgen.speculative import NeighbourDrafter
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints, root)
    assert cli(["train", "draft", "--teacher", str(root / "lm"), "--vq", str(root / "vq"),
                "--out", str(root / "draft"), "--pictures", "3", "--word-conversations", "200", "--threads", "1"]) == 0
    config = json.loads((root / "draft" / "config.json").read_text())
    assert config["kind"] == "neighbours" and config["pictures"] == 3 and config["word_conversations"] == 200
    model = mmgen.load(root, dtype=torch.float32)
    assert isinstance(model.draft, NeighbourTable) and len(model.draft) > 0
    session = model.chat(seed=0)
    assert isinstance(session.pipeline.drafter(session.settings, None), NeighbourDrafter)
    reply = session.send("draw a red circle", picture="always")
    assert reply.image is not None and reply.stats is not None and reply.stats.rounds > 0


def test_train_draft_says_what_is_wrong(tmp_path, tiny_checkpoints):
    with pytest.raises(SystemExit, match="--pictures must be at least 1"):
        cli(["train", "draft", "--teacher", str(tiny_checkpoints / "lm"), "--pictures", "0"])
    with pytest.raises(SystemExit, match="--word-conversations must be at least 1"):
        cli(["train", "draft", "--teacher", str(tiny_checkpoints / "lm"), "--word-conversations", "0"])
    with pytest.raises(SystemExit, match="no transformer at"):
        cli(["train", "draft", "--teacher", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d")])


def test_a_table_for_another_codebook_is_refused(tmp_path, tiny_checkpoints):
    import shutil

    import mmgen
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints, root)
    NeighbourTable(4096, [{}, {}, {}]).save(root / "draft")
    with pytest.raises(ValueError, match="do not belong together"):
        mmgen.load(root)
