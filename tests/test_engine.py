"""The lean engine computes what LlamaForCausalLM computes: prefill, steps, padding, rollback."""
from __future__ import annotations

import torch

from mmgen.engine import Engine
from mmgen.generate import left_pad


def reference_logits(model, rows, pad_id):
    ids, mask, pos = left_pad(rows, pad_id)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, position_ids=pos).logits


def test_prefill_and_steps_match_transformers(tiny_lm):
    torch.manual_seed(0)
    V = tiny_lm.config.vocab_size
    rows = [torch.randint(0, V, (n,)).tolist() for n in (9, 5)]
    ids, mask, _ = left_pad(rows, 0)
    engine = Engine(tiny_lm, batch=2, max_len=64)
    last = engine.prefill(ids, pad=(1 - mask).sum(-1))
    ref = reference_logits(tiny_lm, rows, 0)
    torch.testing.assert_close(last, ref[:, -1], atol=1e-4, rtol=1e-4)
    # three more tokens one by one, then two at once
    for t in range(3):
        new = torch.randint(0, V, (2, 1))
        rows = [r + [int(x)] for r, x in zip(rows, new[:, 0])]
        out = engine.step(new)[:, -1]
        torch.testing.assert_close(out, reference_logits(tiny_lm, rows, 0)[:, -1], atol=1e-4, rtol=1e-4)
    new = torch.randint(0, V, (2, 2))
    rows = [r + x.tolist() for r, x in zip(rows, new)]
    out = engine.step(new)
    torch.testing.assert_close(out, reference_logits(tiny_lm, rows, 0)[:, -2:], atol=1e-4, rtol=1e-4)


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
