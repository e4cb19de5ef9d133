"""int8 and fp16 engine weights: each int8 weight within half a step of its row's scale, logits
close to the native engine's, speculative decoding still exact, and the pipeline's choice of when
to use which."""
from __future__ import annotations

import copy

import pytest
import torch

import mmgen
from mmgen.engine import INT8_MAX_ROWS, Engine, Fp16Weight, Int8Weight, fp16_available, int8_available, linear
from mmgen.generate import engine_for, engine_weights, generate_ids, set_engine_weights
from mmgen.pipeline import pick_weights
from mmgen.sampling import SamplingConfig
from mmgen.speculative import CopyDrafter
from mmgen.stream import IMAGE_TOKENS, Conversation, Turn

needs_int8 = pytest.mark.skipif(not int8_available(), reason="this torch has no torch._weight_int8pack_mm")
needs_fp16 = pytest.mark.skipif(not fp16_available(), reason="this torch has no FBGEMM fp16 matmul")
PACKED = [pytest.param("int8", marks=needs_int8), pytest.param("fp16", marks=needs_fp16)]


def test_each_weight_is_within_half_a_step_of_its_row_scale():
    torch.manual_seed(0)
    w = torch.randn(48, 32) * torch.logspace(-3, 1, 48)[:, None]      # rows of very different sizes
    w[5] = 0.0                                                         # and one of zeros
    q = Int8Weight(w)
    assert q.q.dtype == torch.int8 and q.scale.dtype == torch.bfloat16 and q.q.shape == w.shape
    err = (q.dequantize() - w).abs()
    step = q.scale.float()[:, None]
    # half a step from rounding, and a little more where the bf16 scale rounded below absmax / 127
    assert bool((err <= 0.5 * step + 127 * step * 2 ** -8).all())
    assert float(q.dequantize()[5].abs().max()) == 0.0
    assert bool((q.q.abs().amax(1)[torch.arange(48) != 5] >= 126).all())   # every row uses its range


@needs_int8
def test_int8_engine_logits_follow_the_native_engine(tiny_lm, tiny_stream):
    torch.manual_seed(2)
    V = tiny_lm.config.vocab_size
    ids = torch.randint(0, V, (2, 40))
    e8, en = Engine(tiny_lm, batch=2, max_len=64, weights="int8"), Engine(tiny_lm, batch=2, max_len=64)
    # a prefill of 80 rows is past INT8_MAX_ROWS: it reads the float weights, exactly the native engine
    torch.testing.assert_close(e8.prefill(ids, all_logits=True), en.prefill(ids, all_logits=True))
    # decoding passes of few rows read the int8 ones: close, not equal
    for new in (torch.randint(0, V, (2, 1)), torch.randint(0, V, (2, 9))):
        assert new.numel() <= INT8_MAX_ROWS
        a, b = e8.step(new), en.step(new)
        assert a.dtype == b.dtype == torch.float32 and not torch.equal(a, b)
        rel = (a - b).abs().amax() / b.abs().amax()
        assert float(rel) < 0.05, f"int8 logits drift {float(rel):.3f} of the logits' range"


@needs_fp16
def test_fp16_weights_are_the_weights_rounded_to_fp16():
    torch.manual_seed(3)
    w = torch.randn(40, 24)
    packed = Fp16Weight(w)
    x = torch.randn(2, 5, 24)
    y = linear(x, packed)
    assert y.shape == (2, 5, 40) and y.dtype == torch.float32
    # the kernel multiplies in fp32 by the fp16-rounded weight: equal to that product up to summation order
    torch.testing.assert_close(y, x @ w.half().float().T, rtol=1e-5, atol=1e-5)
    assert not torch.equal(w.half().float(), w)                    # the rounding is real
    part = Fp16Weight.rows(packed, 8, 20)
    torch.testing.assert_close(linear(x, part), y[..., 8:20])


@needs_fp16
def test_fp16_engine_logits_follow_the_native_engine(tiny_lm):
    torch.manual_seed(4)
    V = tiny_lm.config.vocab_size
    ids = torch.randint(0, V, (2, 40))
    e16, en = Engine(tiny_lm, batch=2, max_len=64, weights="fp16"), Engine(tiny_lm, batch=2, max_len=64)
    pairs = [(e16.prefill(ids, all_logits=True), en.prefill(ids, all_logits=True))]   # every pass is fp16
    pairs += [(e16.step(new), en.step(new)) for new in (torch.randint(0, V, (2, 1)), torch.randint(0, V, (2, 9)))]
    for a, b in pairs:
        assert a.dtype == torch.float32 and not torch.equal(a, b)
        rel = (a - b).abs().amax() / b.abs().amax()
        assert float(rel) < 0.01, f"fp16 logits drift {float(rel):.4f} of the logits' range"


@pytest.mark.parametrize("weights", PACKED)
def test_speculative_greedy_is_plain_greedy_with_packed_weights(tiny_lm, tiny_stream, weights):
    model = copy.deepcopy(tiny_lm)
    set_engine_weights(model, weights)
    assert engine_weights(model) == weights and engine_for(model, 2).weights == weights
    conv = Conversation((Turn("user", "draw a red circle"),))
    cond = tiny_stream.encode(conv, generation_prompt=True).ids
    uncond = tiny_stream.encode(conv, generation_prompt=True, drop_last_user_text=True).ids
    config = SamplingConfig(max_words=0, temperature=0.0, picture="always", draft_k=6)

    def draw(drafter=None):
        steps = generate_ids(model, tiny_stream, cond, uncond, config=config, seed=0, drafter=drafter)
        return [s.tokens[0] for s in steps]

    plain = draw()
    assert len(plain) == IMAGE_TOKENS + 3
    assert draw(CopyDrafter()) == plain


def test_pick_weights(tiny_lm):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    expected = "fp16" if fp16_available() else "int8" if int8_available() else "native"
    assert pick_weights(cpu, torch.float32, None) == expected       # no native bf16: packed weights
    assert pick_weights(cpu, torch.bfloat16, None) == "native"       # native bf16 stays
    assert pick_weights(cuda, torch.bfloat16, None) == "native"
    assert pick_weights(cpu, torch.float32, "native") == "native"
    with pytest.raises(ValueError, match="weights must be one of"):
        pick_weights(cpu, torch.float32, "int4")
    with pytest.raises(ValueError, match="for CPUs"):
        pick_weights(cuda, torch.bfloat16, "int8")
    with pytest.raises(ValueError, match="for x86 CPUs"):
        pick_weights(cuda, torch.bfloat16, "fp16")
    with pytest.raises(ValueError, match="weights must be one of"):
        Engine(tiny_lm, batch=1, weights="fp8")


@pytest.mark.parametrize("weights", PACKED)
def test_load_with_packed_weights_draws(tiny_checkpoints, weights):
    model = mmgen.load(tiny_checkpoints, dtype=torch.float32, weights=weights)
    reply = model.chat(seed=0, temperature=0.0).send("draw a red circle", picture="always")
    assert reply.image is not None and reply.image.size == (128, 128)
    assert engine_for(model.lm, 2).weights == weights
