"""The lean engine computes what LlamaForCausalLM computes: prefill, steps, padding, rollback."""
from __future__ import annotations

import pytest
import torch

from mmgen.engine import NEG_LOGIT, Engine
from mmgen.generate import left_pad


def reference_logits(model, rows, pad_id):
    ids, mask, pos = left_pad(rows, pad_id)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, position_ids=pos).logits


@pytest.fixture(params=["image positions", "plain"])
def any_lm(request, tiny_lm, tiny_plain_lm):
    return tiny_lm if request.param == "image positions" else tiny_plain_lm


def test_prefill_and_steps_match_transformers(any_lm, tiny_stream):
    tiny_lm = any_lm
    torch.manual_seed(0)
    V = tiny_lm.config.vocab_size
    codes = lambda n: torch.randint(tiny_stream.image_offset, V, (n,)).tolist()   # noqa: E731
    # one row shows a whole picture, then starts the next (its edit): those codes go on through
    # the steps below, each with its place in the grid and the code at that place before
    picture = [tiny_stream.image_start] + codes(256) + [tiny_stream.image_end]
    rows = [torch.randint(0, V, (4,)).tolist() + picture + [tiny_stream.image_start] + codes(4),
            torch.randint(0, tiny_stream.text_vocab, (5,)).tolist()]
    ids, mask, _ = left_pad(rows, 0)
    engine = Engine(tiny_lm, batch=2, max_len=320)
    last = engine.prefill(ids, pad=(1 - mask).sum(-1))
    ref = reference_logits(tiny_lm, rows, 0)
    torch.testing.assert_close(last, ref[:, -1], atol=1e-4, rtol=1e-4)
    # three more tokens one by one, then two at once
    for t in range(3):
        new = torch.tensor([codes(1), [tiny_stream.image_start if t == 0 else codes(1)[0]]])
        rows = [r + [int(x)] for r, x in zip(rows, new[:, 0])]
        out = engine.step(new)[:, -1]
        torch.testing.assert_close(out, reference_logits(tiny_lm, rows, 0)[:, -1], atol=1e-4, rtol=1e-4)
    new = torch.tensor([codes(2), codes(2)])
    rows = [r + x.tolist() for r, x in zip(rows, new)]
    out = engine.step(new)
    torch.testing.assert_close(out, reference_logits(tiny_lm, rows, 0)[:, -2:], atol=1e-4, rtol=1e-4)


def test_words_after_a_sign_and_a_sign_after_words_match_transformers(tiny_lm, tiny_stream):
    """The letter additions (word letters on a picture's codes, picture letters on the words after
    it) give the engine's steps what a whole-sequence forward gives."""
    s = tiny_stream
    emb = tiny_lm.get_input_embeddings()
    glyphs = [i for i in emb.letters if i >= s.image_offset]
    capitals = [i for i in emb.letters if i < s.image_offset]
    background = next(i for i in range(s.image_offset, s.vocab_size) if i not in emb.letters)
    picture = [background] * 256
    picture[7 * 16 + 6: 7 * 16 + 10], picture[8 * 16 + 6: 8 * 16 + 10] = glyphs[:4], glyphs[4:8]
    words = s.text.encode("make it say ")
    rows = [words + capitals[:3] + [s.image_start] + picture + [s.image_end] + words]
    engine = Engine(tiny_lm, batch=1, max_len=400)
    engine.prefill(torch.tensor(rows), pad=torch.zeros(1, dtype=torch.long))
    for new in capitals[3:7] + [s.image_start] + picture[:20]:   # spell after the picture, then draw again
        rows = [rows[0] + [new]]
        out = engine.step(torch.tensor([[new]]))[:, -1]
        torch.testing.assert_close(out, reference_logits(tiny_lm, rows, 0)[:, -1], atol=1e-4, rtol=1e-4)


def test_rollback_equals_fresh_prefill(tiny_lm):
    torch.manual_seed(1)
    V = tiny_lm.config.vocab_size
    prompt = torch.randint(0, V, (1, 7))
    engine = Engine(tiny_lm, batch=1, max_len=64)
    engine.prefill(prompt)
    engine.step(torch.randint(0, V, (1, 4)))      # four drafted tokens…
    engine.length -= 4                            # …all rejected
    accepted = torch.randint(0, V, (1, 2))
    after = engine.step(accepted)
    fresh = Engine(tiny_lm, batch=1, max_len=64)
    fresh.prefill(prompt)
    torch.testing.assert_close(after, fresh.step(accepted), atol=1e-5, rtol=1e-5)
    n = engine.length
    torch.testing.assert_close(engine.k_cache[:, :, :, :n], fresh.k_cache[:, :, :, :n])


def test_a_vocabulary_range_computes_those_logits_only(tiny_lm, tiny_stream):
    """Inside a picture only codes may come, so generate.py asks for the codes' logits alone."""
    torch.manual_seed(3)
    V = tiny_lm.config.vocab_size
    lo, hi = tiny_stream.image_offset, V
    prompt, new = torch.randint(0, V, (2, 9)), torch.randint(0, V, (2, 3))
    full, part = Engine(tiny_lm, batch=2, max_len=64), Engine(tiny_lm, batch=2, max_len=64)
    full_last, part_last = full.prefill(prompt), part.prefill(prompt, vocab=(0, lo))
    torch.testing.assert_close(part_last[:, :lo], full_last[:, :lo], atol=1e-5, rtol=1e-5)
    a, b = full.step(new), part.step(new, (lo, hi))
    torch.testing.assert_close(b[..., lo:], a[..., lo:], atol=1e-5, rtol=1e-5)
    assert bool((b[..., :lo] == NEG_LOGIT).all()) and bool((part_last[:, lo:] == NEG_LOGIT).all())
    # what the sampler makes of it: the legal ids' distribution is unchanged
    probs = lambda x: torch.softmax(x[..., lo:], -1)    # noqa: E731
    torch.testing.assert_close(probs(b), probs(a), atol=1e-6, rtol=1e-5)
