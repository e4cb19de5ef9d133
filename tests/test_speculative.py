"""Speculative decoding: exact greedy, self-drafting accepts all, same distribution when sampling."""
from __future__ import annotations

from collections import Counter

import pytest

from mmgen.generate import generate_ids
from mmgen.model import build_model
from mmgen.sampling import SamplingConfig
from mmgen.neighbours import NeighbourTable, fit
from mmgen.speculative import CopyDrafter, ModelDrafter, NeighbourDrafter, SpeculationStats
from mmgen.stream import IMAGE_TOKENS, Conversation, Turn


def prompts(stream):
    conv = Conversation((Turn("user", "draw a red circle"),))
    return (stream.encode(conv, generation_prompt=True).ids,
            stream.encode(conv, generation_prompt=True, drop_last_user_text=True).ids)


def codes(model, stream, *, seed, drafter=None, n=1, k=4, stats=None, max_steps=None, **config):
    cond, uncond = prompts(stream)
    cfg = SamplingConfig(max_words=0, picture="always", draft_k=k, **config)
    steps = list(generate_ids(model, stream, cond, uncond, config=cfg, n=n, seed=seed, drafter=drafter, stats=stats,
                              max_steps=max_steps))
    return [[s.tokens[r] for s in steps] for r in range(n)]


@pytest.fixture(scope="module")
def other_tiny(tiny_stream):
    return build_model("tiny", tiny_stream.vocab_size, seed=1).eval()


@pytest.fixture(scope="module")
def tiny_table(tiny_lm, tiny_stream):
    """A neighbour table distilled from the tiny transformer along its own greedy picture."""
    greedy = codes(tiny_lm, tiny_stream, seed=0, temperature=0.0)[0][1:1 + IMAGE_TOKENS]
    picture = Conversation((Turn("user", "draw a red circle"),
                            Turn("assistant", "", tuple(t - tiny_stream.image_offset for t in greedy))))
    return fit(tiny_lm, tiny_stream, [picture], pictures=1, config=SamplingConfig())


@pytest.mark.parametrize("n", [1, 2])
def test_greedy_speculative_equals_plain_greedy(tiny_lm, tiny_stream, other_tiny, tiny_table, n):
    plain = codes(tiny_lm, tiny_stream, seed=0, n=n, temperature=0.0)
    assert len(plain[0]) == IMAGE_TOKENS + 3          # <image> 256 codes </image> <eot>
    assert codes(tiny_lm, tiny_stream, seed=0, n=n, temperature=0.0, drafter=ModelDrafter(other_tiny)) == plain
    assert codes(tiny_lm, tiny_stream, seed=0, n=n, temperature=0.0, drafter=CopyDrafter()) == plain
    assert codes(tiny_lm, tiny_stream, seed=0, n=n, temperature=0.0, drafter=NeighbourDrafter(tiny_table),
                 k=12) == plain


def test_drafts_stop_where_the_table_is_unsure(tiny_stream):
    """A round drafts while all its drafts surviving stays at least CopyDrafter.STOP_BELOW likely."""
    def level(width, code):       # every neighbourhood of a picture of `code` alone, `width` wide
        return {key[:width]: code for key in ((-1, code, -1), (code, code, code), (code, code, -1), (code, -1, code))}
    keys = [{**level(3, 5), **level(3, 6)}, {**level(2, 5), **level(2, 6)}, {**level(1, 5), **level(1, 6)}]
    def drafted(chance, reference=None, rows=1, k=12, six=None, pictures=None):
        table = NeighbourTable(tiny_stream.codebook_size, keys, confidence=[
            {key: (six if six is not None and key[0] == 6 else chance) for key in lv} for lv in keys])
        drafts, _ = NeighbourDrafter(table, reference).propose(k, stream=tiny_stream, n=rows,
                                                               codes=pictures or [[5] * 40] * rows)
        return drafts.shape[1]
    assert drafted(0.99) == 12                     # sure: as far as asked
    assert drafted(0.5) == 2                       # 0.5, 0.25, then 0.125 < 0.25: stops after two
    assert drafted(0.1) == CopyDrafter.MIN_DRAFTS  # never fewer
    assert drafted(0.1, reference=[5] * IMAGE_TOKENS) == 12      # an edit's reference is copied as far as asked
    assert drafted(0.5, rows=3) == 2
    # in a batch the surest row decides: a sure row of 5s keeps an unsure row of 6s drafting
    assert drafted(0.99, six=0.5, rows=2, pictures=[[5] * 40, [6] * 40]) == 12
    assert drafted(0.99, six=0.5, rows=2, pictures=[[6] * 40, [6] * 40]) == 2
    assert drafted(0.99, k=3) == 3


def test_model_as_its_own_draft_accepts_everything(tiny_lm, tiny_stream):
    stats = SpeculationStats()
    out = codes(tiny_lm, tiny_stream, seed=3, temperature=1.0, drafter=ModelDrafter(tiny_lm), k=5, stats=stats)
    assert stats.drafted > 200 and stats.accepted == stats.drafted
    assert stats.acceptance_rate == 1.0 and stats.mean_accepted_length > 5
    assert tiny_stream.decode(prompts(tiny_stream)[0] + out[0]).turns[-1].codes is not None


def test_copy_drafting_with_a_reference_accepts_a_copy(tiny_lm, tiny_stream):
    # greedy: the reference is the greedy picture itself, so every draft is right
    ref = [t - tiny_stream.image_offset for t in codes(tiny_lm, tiny_stream, seed=0, temperature=0.0)[0][1:1 + IMAGE_TOKENS]]
    stats = SpeculationStats()
    codes(tiny_lm, tiny_stream, seed=0, temperature=0.0, drafter=CopyDrafter(ref), stats=stats)
    assert stats.acceptance_rate == 1.0


def test_a_table_fitted_along_the_greedy_picture_drafts_it(tiny_lm, tiny_stream, tiny_table):
    # each neighbourhood seen once votes the code greedy decoding drew there; those seen more than
    # once (a 64-code book; the top row's have only a left neighbour) may disagree, so not every
    # draft is right. The tiny random model's picture is noise: copying the code above never is.
    # without its confidences (each neighbourhood seen once is < 0.5 sure) drafts run to k
    unsure = SpeculationStats()
    codes(tiny_lm, tiny_stream, seed=0, temperature=0.0, drafter=NeighbourDrafter(tiny_table), k=8, stats=unsure)
    assert max(unsure.per_round) <= CopyDrafter.MIN_DRAFTS + 1
    tiny_table = NeighbourTable(tiny_table.codebook_size, tiny_table.levels)
    table, copy = SpeculationStats(), SpeculationStats()
    codes(tiny_lm, tiny_stream, seed=0, temperature=0.0, drafter=NeighbourDrafter(tiny_table), k=8, stats=table)
    codes(tiny_lm, tiny_stream, seed=0, temperature=0.0, drafter=CopyDrafter(), k=8, stats=copy)
    assert table.acceptance_rate > 0.6 and copy.acceptance_rate < 0.1
    assert table.mean_accepted_length > 5 > 2 > copy.mean_accepted_length


@pytest.mark.parametrize("drafter_kind", ["model", "copy", "neighbours"])
def test_sampled_distribution_matches_plain_decoding(tiny_lm, tiny_stream, other_tiny, tiny_table, drafter_kind):
    """The joint law of the first three codes, 600 draws each way.

    top_k=2 leaves 8 outcomes; the total-variation distance between two empirical laws of 600
    draws from the same 8-outcome law is about 0.05 (its standard deviation ~0.02); a drafter that
    biased the law — e.g. accepting every draft — gives ≥ 0.2 here. Tolerance: 0.12.
    """
    def law(drafter_factory):
        counts = Counter()
        for seed in range(600):
            out = codes(tiny_lm, tiny_stream, seed=seed, temperature=1.0, top_k=2, cfg=2.0, k=3,
                        drafter=drafter_factory(), max_steps=4)
            counts[tuple(out[0][1:4])] += 1
        return counts
    make = {"model": lambda: ModelDrafter(other_tiny), "copy": lambda: CopyDrafter(),
            "neighbours": lambda: NeighbourDrafter(tiny_table)}[drafter_kind]
    plain, spec = law(lambda: None), law(make)
    tv = 0.5 * sum(abs(plain[x] - spec[x]) for x in set(plain) | set(spec)) / 600
    assert tv < 0.12, (tv, plain.most_common(4), spec.most_common(4))


@pytest.mark.parametrize("drafter", [None, "copy", "model", "neighbours"])
def test_region_edits_never_change_a_code_outside_the_mask(tiny_lm, tiny_stream, other_tiny, tiny_table, drafter):
    import random
    rng = random.Random(0)
    original = [rng.randrange(tiny_stream.codebook_size) for _ in range(IMAGE_TOKENS)]
    mask = [4 <= i // 16 < 9 and 3 <= i % 16 < 12 for i in range(IMAGE_TOKENS)]   # a box to redraw
    fixed = [None if m else c for m, c in zip(mask, original)]
    make = {None: lambda: None, "copy": lambda: CopyDrafter(original), "model": lambda: ModelDrafter(other_tiny),
            "neighbours": lambda: NeighbourDrafter(tiny_table, original)}[drafter]
    cond, uncond = prompts(tiny_stream)
    for seed in range(3):
        steps = list(generate_ids(tiny_lm, tiny_stream, cond, uncond, seed=seed, drafter=make(), fixed=fixed,
                                  config=SamplingConfig(max_words=0, picture="always")))
        out = [s.tokens[0] - tiny_stream.image_offset for s in steps[1:1 + IMAGE_TOKENS]]
        assert all(o == c for o, c, m in zip(out, original, mask) if not m)
        assert any(o != c for o, c, m in zip(out, original, mask) if m)     # the inside is sampled anew


@pytest.mark.parametrize("right", [True, False])
@pytest.mark.parametrize("word_cfg", [1.0, 3.0, 8.0])     # 8: a twin not fed the drafts changes the reply
def test_drafted_words_leave_the_reply_unchanged(tiny_lm, tiny_stream, tiny_table, right, word_cfg):
    """Words drafted from a table that knows the greedy reply are kept, several per pass; drafts
    from one that knows only wrong words are all refused. The reply and picture are the same,
    guided words (word_cfg: the twin checks the drafts too, and rolls back with the words) included."""
    cond, uncond = prompts(tiny_stream)
    config = SamplingConfig(max_words=12, temperature=0.0, picture="always", draft_k=4, word_cfg=word_cfg)
    def run(drafter=None, stats=None):
        return [s.tokens[0] for s in generate_ids(tiny_lm, tiny_stream, cond, uncond, config=config, seed=0,
                                                  drafter=drafter, stats=stats)]
    plain = run()
    reply = plain[:plain.index(tiny_stream.image_start) + 1]
    assert len(reply) > 4
    sequence = list(cond) + reply
    words = [{}, {}, {}]
    for j in range(len(cond), len(sequence)):       # a random model repeats itself: first follower wins
        for level, w in enumerate((3, 2, 1)):
            words[level].setdefault(tuple(sequence[j - w:j]), sequence[j] if right else sequence[j] + 1)
    table = NeighbourTable(tiny_table.codebook_size, tiny_table.levels, words=words)
    stats = SpeculationStats()
    assert run(NeighbourDrafter(table), stats) == plain
    if right:
        assert stats.word_rounds > 0 and stats.word_tokens / stats.word_rounds > 2.5
    else:
        assert stats.word_tokens == stats.word_rounds             # one word per pass: every draft refused
