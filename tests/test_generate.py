"""Sampling on a tiny random transformer: grammar, CFG (pictures and words), seeds, KV cache."""
from __future__ import annotations

import pytest
import torch

from mmgen.generate import generate_ids
from mmgen.sampling import Grammar, SamplingConfig, logits_to_probs, next_token_probs
from mmgen.stream import IMAGE_TOKENS, Conversation, Turn


def prompts(stream, text="draw a red circle under a sign that says OPEN"):
    conv = Conversation((Turn("user", text),))
    return (stream.encode(conv, generation_prompt=True).ids,
            stream.encode(conv, generation_prompt=True, drop_last_user_text=True).ids)


def run(model, stream, *, seed, n=1, backend="engine", picture="always", **config):
    cond, uncond = prompts(stream)
    cfg = SamplingConfig(temperature=1.0, word_temperature=1.0, max_words=6, picture=picture, **config)
    steps = list(generate_ids(model, stream, cond, uncond, config=cfg, n=n, seed=seed, backend=backend))
    rows = [[s.tokens[r] for s in steps] for r in range(n)]
    return [row[:row.index(stream.eot) + 1] for row in rows]     # a finished row idles on <eot>


@pytest.mark.parametrize("seed", range(6))
def test_grammar_is_never_violated(tiny_lm, tiny_stream, seed):
    for row in run(tiny_lm, tiny_stream, seed=seed, n=2, picture="always" if seed % 2 == 0 else "auto"):
        s = tiny_stream
        assert row[-1] == s.eot
        cond, _ = prompts(s)
        conv = s.decode(cond + row)             # raises on any malformed picture
        reply = conv.turns[-1]
        if seed % 2 == 0:
            assert reply.codes is not None and len(reply.codes) == IMAGE_TOKENS
        if s.image_start in row:
            i = row.index(s.image_start)
            assert all(s.is_image_id(t) for t in row[i + 1:i + 1 + IMAGE_TOKENS])
            assert row[i + 1 + IMAGE_TOKENS:] == [s.image_end, s.eot]
        outside = [t for t in row if not s.is_image_id(t)]
        assert len(outside) == len(row) - (IMAGE_TOKENS if s.image_start in row else 0)


def test_forbidding_pictures_gives_words_only(tiny_lm, tiny_stream):
    cond, uncond = prompts(tiny_stream, "what colour is it?")
    steps = list(generate_ids(tiny_lm, tiny_stream, cond, uncond,
                              config=SamplingConfig(word_temperature=1.0, picture="never"), seed=3))
    assert not any(tiny_stream.is_image_id(s.tokens[0]) or s.tokens[0] == tiny_stream.image_start for s in steps)


def test_seeded_sampling_is_reproducible(tiny_lm, tiny_stream):
    assert run(tiny_lm, tiny_stream, seed=5) == run(tiny_lm, tiny_stream, seed=5)
    assert run(tiny_lm, tiny_stream, seed=5) != run(tiny_lm, tiny_stream, seed=6)


def test_kv_cache_gives_the_same_tokens_as_no_cache(tiny_lm, tiny_stream):
    uncached = run(tiny_lm, tiny_stream, seed=2, n=2, backend="nocache")
    assert run(tiny_lm, tiny_stream, seed=2, n=2, backend="engine") == uncached
    assert run(tiny_lm, tiny_stream, seed=2, n=2, backend="hf") == uncached
    assert run(tiny_lm, tiny_stream, seed=2, n=2, backend="recompute") == uncached


def test_cfg_scale_one_equals_conditional_sampling(tiny_lm, tiny_stream):
    cond, uncond = prompts(tiny_stream)
    cfg = SamplingConfig(temperature=1.0, word_temperature=1.0, max_words=6, cfg=1.0, word_cfg=1.0, picture="always")
    with_uncond = [s.tokens[0] for s in generate_ids(tiny_lm, tiny_stream, cond, uncond, config=cfg, seed=9)]
    alone = [s.tokens[0] for s in generate_ids(tiny_lm, tiny_stream, cond, None, config=cfg, seed=9)]
    assert with_uncond == alone


def test_guidance_changes_the_picture(tiny_lm, tiny_stream):
    assert run(tiny_lm, tiny_stream, seed=4, cfg=1.0) != run(tiny_lm, tiny_stream, seed=4, cfg=5.0)


def test_top_k_and_top_p_limit_the_support():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    assert (logits_to_probs(logits, temperature=1.0, top_k=2) > 0).sum() == 2
    p = logits_to_probs(logits, temperature=1.0, top_p=0.7)
    # softmax: [.636 .234 .086 .032 .012] -> the first two reach 0.7
    assert (p > 0).sum() == 2 and torch.isclose(p.sum(), torch.tensor(1.0))


def test_grammar_states(tiny_stream):
    s = tiny_stream
    g = Grammar(s, picture="always")
    allowed = g.allowed(max_words=4)
    assert not allowed[s.eot] and allowed[s.image_start] and not allowed[s.image_offset]
    g.advance(s.image_start)
    for _ in range(IMAGE_TOKENS):
        a = g.allowed(4)
        assert a[s.image_offset:].all() and not a[:s.image_offset].any()
        g.advance(s.image_offset)
    assert g.allowed(4).nonzero().flatten().tolist() == [s.image_end]
    g.advance(s.image_end)
    assert g.allowed(4).nonzero().flatten().tolist() == [s.eot]


def test_with_pictures_off_the_chance_of_one_ends_the_reply(tiny_stream):
    s = tiny_stream
    assert Grammar(s).folded_picture() is None                      # pictures allowed: nothing moves
    g = Grammar(s, picture="never")
    assert g.folded_picture() is None                               # no empty replies
    g.advance(5)                                                    # one word written
    assert g.folded_picture() == (s.image_start, s.eot)
    logits = torch.zeros(1, s.vocab_size)
    logits[0, s.image_start], logits[0, s.eot], logits[0, 7] = 6.0, 1.0, 5.0
    allowed = g.allowed(max_words=96)
    assert not allowed[s.image_start]
    plain = next_token_probs(logits, None, allowed, SamplingConfig(word_temperature=1.0), in_image=False)
    folded = next_token_probs(logits, None, allowed, SamplingConfig(word_temperature=1.0), in_image=False,
                              fold=g.folded_picture())
    # masking alone renormalises <image>'s mass over every word; folding gives it to <eot>
    full = torch.softmax(logits, -1)[0]
    assert plain[0, s.image_start] == 0 and folded[0, s.image_start] == 0
    assert torch.isclose(folded[0, s.eot] / folded[0, 7], (full[s.eot] + full[s.image_start]) / full[7])
    greedy = SamplingConfig(word_temperature=0.0)
    assert next_token_probs(logits, None, allowed, greedy, in_image=False).argmax() == 7
    assert next_token_probs(logits, None, allowed, greedy, in_image=False, fold=g.folded_picture()).argmax() == s.eot


def prefills(model) -> int:
    return sum(e.prefills for e in model.__dict__.get("_mmgen_engines", {}).values())


@pytest.mark.parametrize("guide_reply", [False, True])
def test_the_unconditional_twin_reads_the_reply_only_when_asked(tiny_lm, tiny_stream, monkeypatch, guide_reply):
    """Words come from one row; the picture rows branch from it: [cond + words] × n and twins that
    read the same words (guide_reply False) or neither request nor reply (True). The turn's
    conversation is prefilled once, and so is the twin of its words (word_cfg)."""
    import mmgen.generate as G
    branched = []
    real_branch = G.EngineDecoder.branch

    def spy(self, held, copies, twin, filler):
        branched.append((held, copies, twin))
        return real_branch(self, held, copies, twin, filler)
    monkeypatch.setattr(G.EngineDecoder, "branch", spy)
    s = tiny_stream
    cond, uncond = prompts(s)
    cfg = SamplingConfig(temperature=1.0, word_temperature=1.0, max_words=6, guide_reply=guide_reply, picture="always")
    before = prefills(tiny_lm)
    steps = list(generate_ids(tiny_lm, s, cond, uncond, config=cfg, n=2, seed=1))
    assert prefills(tiny_lm) == before + 2
    words = [t[0] for t in (st.tokens for st in steps)]
    words = words[:words.index(s.image_start) + 1]
    twin = uncond + ([] if guide_reply else words[:-1])
    assert branched == [(cond + words[:-1], 2, twin)]


def test_a_branch_holds_what_a_fresh_prefill_would(tiny_lm, tiny_stream):
    """The picture rows made by copying the words' row and reading the twin's tail give the logits
    a prefill of the whole rows gives."""
    from mmgen.generate import EngineDecoder, engine_for, left_pad
    s = tiny_stream
    cond, uncond = prompts(s)
    held = cond + [10, 11]                     # two words of a reply
    twin = list(uncond)
    words = EngineDecoder(tiny_lm, 1)
    words.start(*left_pad([held], s.pad)[:2])
    pictures = words.branch(held, 2, twin, s.pad)
    got = pictures.feed(torch.tensor([s.image_start] * 4))
    rows = [held + [s.image_start]] * 2 + [twin + [s.image_start]] * 2
    ids, mask, _ = left_pad(rows, s.pad)
    want = engine_for(tiny_lm, 4).prefill(ids, pad=(1 - mask).sum(-1))
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(got[0], got[2], atol=1e-3)       # the twin is not a copy of the cond row


def test_guided_words_are_the_same_on_every_backend(tiny_lm, tiny_stream):
    """word_cfg: the words' twin decodes beside them on its own rows (a sibling engine, or another
    reference decoder); every backend gives the same reply and pictures."""
    uncached = run(tiny_lm, tiny_stream, seed=2, n=2, backend="nocache", word_cfg=3.0)
    for backend in ("engine", "hf", "recompute"):
        assert run(tiny_lm, tiny_stream, seed=2, n=2, backend=backend, word_cfg=3.0) == uncached


def test_guided_words_are_the_twins_logits_pushed_towards_the_prompts(tiny_lm, tiny_stream):
    """Greedy guided words are the argmax of u + s·(c − u): c the model's logits after the prompt
    and the words so far, u after the prompt with the request dropped and the same words."""
    s = tiny_stream
    cond, uncond = prompts(s)
    scale, config = 8.0, SamplingConfig(word_temperature=0.0, max_words=5, picture="never", word_cfg=8.0)
    words = [st.tokens[0] for st in generate_ids(tiny_lm, s, cond, uncond, config=config, seed=0)]
    plain = [st.tokens[0] for st in generate_ids(tiny_lm, s, cond, uncond, seed=0,
                                                 config=SamplingConfig(word_temperature=0.0, max_words=5,
                                                                       picture="never"))]
    assert words != plain
    grammar = Grammar(s, picture="never")
    with torch.no_grad():
        for j, t in enumerate(words):
            c = tiny_lm(torch.tensor([cond + words[:j]])).logits[0, -1].float()
            u = tiny_lm(torch.tensor([uncond + words[:j]])).logits[0, -1].float()
            guided = u + scale * (c - u)
            if grammar.folded_picture() is not None:      # pictures off: <image>'s chance ends the reply
                guided[s.eot] = torch.logaddexp(guided[s.eot], guided[s.image_start])
            assert t == int(guided.masked_fill(~grammar.allowed(config.max_words), float("-inf")).argmax())
            grammar.advance(t)
    assert len(words) > 2


def test_words_after_a_picture_are_not_guided(tiny_lm, tiny_stream):
    """Once the conversation holds a picture, its twin reads the picture too; word_cfg leaves the
    reply to it as it is, and guides only a conversation's first plan."""
    s = tiny_stream
    codes = tuple(i % s.codebook_size for i in range(IMAGE_TOKENS))
    conv = Conversation((Turn("user", "draw a red circle"), Turn("assistant", "Here it is.", codes),
                         Turn("user", "make it blue")))
    cond, uncond = (s.encode(conv, generation_prompt=True, drop_last_user_text=d).ids for d in (False, True))

    def words(prompt, twin, word_cfg):
        config = SamplingConfig(word_temperature=0.0, max_words=6, picture="never", word_cfg=word_cfg)
        return [st.tokens[0] for st in generate_ids(tiny_lm, s, prompt, twin, config=config, seed=0)]
    assert words(cond, uncond, 20.0) == words(cond, uncond, 1.0)       # (20 changes a random model's words)
    first, first_twin = prompts(s)
    assert words(first, first_twin, 20.0) != words(first, first_twin, 1.0)
