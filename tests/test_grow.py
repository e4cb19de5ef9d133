"""`mmgen train grow`: a deeper transformer that starts out saying exactly what the old one says."""
from __future__ import annotations

import pytest
import torch

from mmgen.cli import main as cli
from mmgen.model import load_model
from mmgen.train.grow import grow, layer_plan


def test_layer_plan_keeps_old_layers_in_order_and_spreads_new_ones():
    assert layer_plan(8, 12) == [0, 1, None, 2, 3, None, 4, 5, None, 6, 7, None]
    assert layer_plan(8, 10) == [0, 1, 2, 3, None, 4, 5, 6, 7, None]
    assert layer_plan(2, 6) == [0, None, None, 1, None, None]
    for old, new in [(8, 9), (8, 16), (3, 7), (12, 20)]:
        plan = layer_plan(old, new)
        assert len(plan) == new
        assert [i for i in plan if i is not None] == list(range(old))
        assert plan[0] == 0                       # a new layer always copies one before it


def test_layer_plan_refuses_to_shrink():
    with pytest.raises(ValueError, match="more than"):
        layer_plan(8, 8)


def _random_ids(model):
    """Two rows of random ids in which every StreamEmbedding addition applies: a capitalised word,
    a picture (random codes, some of them lettering), words after it, and the start of its edit."""
    spec, vocab = model.config.mmgen_image_positions, model.config.vocab_size
    start, offset = spec["image_start"], spec["image_offset"]
    capitals = [i for i in spec["letters"] if i < offset][:4]
    g = torch.Generator().manual_seed(1)

    def draw(low, high, n):
        return torch.randint(low, high, (n,), generator=g).tolist()
    return torch.tensor([draw(0, offset, 6) + capitals + [start] + draw(offset, vocab, 256) + draw(0, offset, 6)
                         + [start] + draw(offset, vocab, 20) for _ in range(2)])


def test_grown_model_computes_what_the_old_one_does(tiny_lm):
    grown, progress = grow(tiny_lm, 5)
    assert grown.config.num_hidden_layers == 5 and tiny_lm.config.num_hidden_layers == 2
    assert progress["grown"][-1]["plan"] == layer_plan(2, 5)
    ids = _random_ids(tiny_lm)
    with torch.no_grad():
        assert torch.equal(tiny_lm(ids).logits, grown(ids).logits)
    # the input and output embeddings stay one tensor, as in the old model
    assert grown.get_input_embeddings().weight is grown.get_output_embeddings().weight
    # with the KV cache too: one token at a time after a prefix
    with torch.no_grad():
        old = tiny_lm(ids[:, :100], use_cache=True)
        new = grown(ids[:, :100], use_cache=True)
        step_old = tiny_lm(ids[:, 100:101], past_key_values=old.past_key_values).logits
        step_new = grown(ids[:, 100:101], past_key_values=new.past_key_values).logits
    assert torch.allclose(step_old, step_new, atol=1e-5)


def test_new_layers_learn_from_the_first_step(tiny_lm):
    grown, _ = grow(tiny_lm, 3)                    # layers: old 0, old 1, new
    grown.train()
    ids = _random_ids(grown)
    grown(ids, labels=ids).loss.backward()
    new = grown.model.layers[2]
    assert new.self_attn.o_proj.weight.abs().sum() == 0 and new.mlp.down_proj.weight.abs().sum() == 0
    assert new.self_attn.o_proj.weight.grad.abs().sum() > 0
    assert new.mlp.down_proj.weight.grad.abs().sum() > 0
    # the rest of the new layer is a copy of old layer 1
    assert torch.equal(new.mlp.up_proj.weight, grown.model.layers[1].mlp.up_proj.weight)


def test_output_projection_biases_are_zeroed_too():
    from mmgen.model import build_model
    old = build_model("tiny", 300, seed=0, attention_bias=True, mlp_bias=True).eval()
    with torch.no_grad():
        for layer in old.model.layers:
            layer.self_attn.o_proj.bias.normal_(0, 0.1)
            layer.mlp.down_proj.bias.normal_(0, 0.1)
    grown, _ = grow(old, 3)
    ids = torch.randint(0, 300, (1, 30), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(old(ids).logits, grown(ids).logits)


def test_grow_command_writes_a_checkpoint_that_loads_and_matches(tiny_checkpoints, tmp_path, capsys):
    out = tmp_path / "grown"
    assert cli(["train", "grow", "--from", str(tiny_checkpoints / "lm"), "--out", str(out), "--layers", "4"]) == 0
    assert "4 layers" in capsys.readouterr().out
    old = load_model(tiny_checkpoints / "lm")
    old.to(torch.bfloat16).float()                 # checkpoints are written in bf16
    grown = load_model(out)
    assert grown.config.num_hidden_layers == 4
    assert (out / "tokenizer.json").is_file()
    ids = _random_ids(old)
    with torch.no_grad():
        assert torch.allclose(old(ids).logits, grown(ids).logits, atol=1e-4)


def test_grow_command_explains_bad_input(tiny_checkpoints, tmp_path):
    with pytest.raises(SystemExit, match="more than the model's 2 layers"):
        cli(["train", "grow", "--from", str(tiny_checkpoints / "lm"), "--out", str(tmp_path / "g"), "--layers", "2"])
    with pytest.raises(SystemExit, match="no transformer checkpoint"):
        cli(["train", "grow", "--from", str(tmp_path / "nowhere"), "--out", str(tmp_path / "g"), "--layers", "4"])
    assert not (tmp_path / "g").exists()


def test_grow_command_refuses_an_out_it_would_destroy(tiny_checkpoints, tmp_path):
    source = tiny_checkpoints / "lm"
    before = (source / "config.json").read_text()
    (tmp_path / "a_file").write_text("keep")
    (tmp_path / "runs" / "lm1").mkdir(parents=True)
    for out, message in [(source, "is the checkpoint being grown"), (tmp_path / "a_file", "is a file"),
                         (tmp_path / "a_file" / "g", "is a file"), (tmp_path / "runs", "something other")]:
        with pytest.raises(SystemExit, match=message):
            cli(["train", "grow", "--from", str(source), "--out", str(out), "--layers", "4"])
    assert (source / "config.json").read_text() == before
    assert (tmp_path / "a_file").read_text() == "keep" and (tmp_path / "runs" / "lm1").is_dir()


def test_a_grown_checkpoint_resumes_training_under_its_own_name(tiny_checkpoints, tmp_path):
    out = tmp_path / "grown"
    assert cli(["train", "grow", "--from", str(tiny_checkpoints / "lm"), "--out", str(out), "--layers", "3"]) == 0
    before = load_model(out).state_dict()
    assert cli(["train", "lm", "--resume", "--out", str(out), "--vq", str(tiny_checkpoints / "vq"),
                "--stop-after", "1", "--batch-tokens", "1500", "--max-len", "700", "--eval-every", "1",
                "--save-every", "1", "--threads", "1"]) == 0
    model = load_model(out)
    assert model.config.num_hidden_layers == 3
    assert model.config.mmgen_preset == "tiny-3-layers"          # not the --preset default, "small"
    assert model.config.mmgen_training["grown"][0]["to_layers"] == 3
    after = model.state_dict()
    new_output = "model.layers.2.mlp.down_proj.weight"
    assert before[new_output].abs().sum() == 0 and after[new_output].abs().sum() > 0   # the new layer trained


def test_grown_names_carry_the_depth():
    from mmgen.train.grow import grown_name
    assert grown_name("small", 12) == "small-12-layers"
    assert grown_name("small-12-layers", 16) == "small-16-layers"
    assert grown_name(None, 4) == "lm-4-layers"
