"""A smoke run of `mmgen train lm` on a tiny model: it trains, checkpoints, loads and resumes."""
from __future__ import annotations

import argparse
import json

import pytest
import torch

from mmgen.cli import main as cli
from mmgen.eval.vocabulary import training_vocabulary
from mmgen.model import load_model
from mmgen.train.lm import add_arguments, check_arguments, lr_at
from mmgen.unknown_words import load_vocabulary
from mmgen.vq import PRESETS, VQTokenizer


@pytest.fixture(scope="module")
def tiny_vq(tmp_path_factory):
    path = tmp_path_factory.mktemp("vq")
    torch.manual_seed(0)
    VQTokenizer(PRESETS["tiny"]).save_pretrained(path)
    return path


def test_train_checkpoint_resume(tmp_path, tiny_vq):
    out = tmp_path / "lm"
    common = ["train", "lm", "--preset", "tiny", "--vq", str(tiny_vq), "--out", str(out), "--steps", "6",
              "--batch-tokens", "1500", "--max-len", "700", "--eval-every", "3", "--save-every", "3", "--threads", "1"]
    assert cli(common + ["--stop-after", "3"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["mmgen_training"]["steps"] == 3 and config["mmgen_training"]["tokens"] > 0
    assert (out / "tokenizer.json").is_file() and (out / "model.safetensors").is_file()
    assert not list(tmp_path.glob(".lm.*")), "temporary checkpoint folders are cleaned up"
    taught = load_vocabulary(out)                 # the words its messages use, for replies' notes
    assert taught >= training_vocabulary() and {"draw", "circle", "blue", "remove"} <= taught
    first = load_model(out).state_dict()
    assert cli(common + ["--resume", "--chain-rate", "0.5", "--sign-rate", "0.25", "--group-rate", "0.4",
                         "--told-rate", "0.2", "--no-picture-rate", "0.1", "--small-talk-rate", "0.2",
                         "--text-weight", "6"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["mmgen_training"]["steps"] == 6
    assert load_vocabulary(out) > taught           # kept, and grown by what told scenes and quizzes say
    assert {"hello", "goodbye"} <= load_vocabulary(out) - taught        # and by small talk
    runs = config["mmgen_training"]["runs"]              # each run's data mix travels with the checkpoint
    assert [(r["from_step"], r["chain_rate"], r["sign_rate"], r["group_rate"], r["told_rate"]) for r in runs] == \
        [(0, 0.0, 0.0, 0.0, 0.0), (3, 0.5, 0.25, 0.4, 0.2)]
    assert runs[-1]["text_weight"] == 6 and [r["no_picture_rate"] for r in runs] == [0.0, 0.1]
    assert [r["small_talk_rate"] for r in runs] == [0.0, 0.2]
    letters = config["mmgen_image_positions"]["letters"]  # capitals and the tokenizer's lettering codes
    assert len(letters) >= 26 and "model.embed_tokens.letter_places" in load_model(out).state_dict()
    assert config["mmgen_training"]["tokens"] > 0 and "val" in config["mmgen_training"]
    curve = config["mmgen_training"]["curve"]          # one point per evaluation, kept across the resume
    assert [p["step"] for p in curve] == [3, 6] and curve[0]["tokens"] < curve[1]["tokens"]
    assert curve[-1]["image"] == round(config["mmgen_training"]["val"]["image"], 4)
    second = load_model(out).state_dict()
    assert any(not torch.equal(first[k], second[k]) for k in first), "resuming trained further"


def test_a_timed_run_with_rendering_workers_stops_and_checkpoints(tmp_path, tiny_vq, capsys):
    out = tmp_path / "lm"
    assert cli(["train", "lm", "--preset", "tiny", "--vq", str(tiny_vq), "--out", str(out), "--workers", "1",
                "--minutes", "0.001", "--batch-tokens", "1500", "--max-len", "700", "--eval-every", "1000",
                "--save-every", "1000", "--threads", "1"]) == 0
    training = json.loads((out / "config.json").read_text())["mmgen_training"]
    assert training["steps"] >= 1 and [p["step"] for p in training["curve"]] == [training["steps"]]
    with pytest.raises(SystemExit, match="--minutes must be positive"):
        cli(["train", "lm", "--vq", str(tiny_vq), "--out", str(out), "--minutes", "0"])
    with pytest.raises(SystemExit, match=r"--drill-rate must lie in \[0, 1\]"):
        cli(["train", "lm", "--vq", str(tiny_vq), "--out", str(out), "--drill-rate", "1.5"])
    with pytest.raises(SystemExit):
        cli(["train", "lm", "--vq", str(tiny_vq), "--out", str(out), "--drill-kinds", "count,colour"])
    assert "--drill-kinds: colour (drill kinds are color_check, count, cells, locate)" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--drill-kinds needs quizzes or told scenes with drills"):
        cli(["train", "lm", "--vq", str(tiny_vq), "--out", str(out), "--drill-kinds", "count"])
    told_drills = argparse.ArgumentParser()
    add_arguments(told_drills)
    check_arguments(told_drills.parse_args(["--told-rate", "1", "--drill-kinds", "count"]))   # told scenes drill too
    with pytest.raises(SystemExit, match=r"--told-rate must lie in \[0, 1\]"):
        cli(["train", "lm", "--vq", str(tiny_vq), "--out", str(out), "--told-rate", "2"])
    with pytest.raises(SystemExit, match=r"--no-picture-rate must lie in \[0, 1\]"):
        cli(["train", "lm", "--vq", str(tiny_vq), "--out", str(out), "--no-picture-rate", "1.5"])
    with pytest.raises(SystemExit, match=r"--group-rate must lie in \[0, 1\]"):
        cli(["train", "lm", "--vq", str(tiny_vq), "--out", str(out), "--group-rate", "-0.1"])
    with pytest.raises(SystemExit, match="--save-every must be 1 or more"):
        cli(["train", "lm", "--vq", str(tiny_vq), "--out", str(out), "--save-every", "0"])
    for fresh in ([], ["--init-from", str(tmp_path / "pretrained")]):     # a forgotten --resume; another start
        with pytest.raises(SystemExit, match="already holds a checkpoint, which a new run would replace"):
            cli(["train", "lm", "--vq", str(tiny_vq), "--out", str(out), *fresh])


def test_schedule_warms_up_and_decays():
    kw = dict(peak=1e-3, warmup=10, total=100, min_ratio=0.1)
    assert lr_at(0, **kw) < lr_at(9, **kw) == pytest.approx(1e-3)
    assert lr_at(50, **kw) < 1e-3 and lr_at(100, **kw) == pytest.approx(1e-4)


def test_draft_distillation_smoke(tmp_path, tiny_vq):
    teacher = tmp_path / "lm"
    common = ["--vq", str(tiny_vq), "--batch-tokens", "1500", "--max-len", "700", "--eval-every", "2",
              "--save-every", "2", "--threads", "1"]
    assert cli(["train", "lm", "--preset", "tiny", "--out", str(teacher), "--steps", "2"] + common) == 0
    draft = tmp_path / "draft"
    assert cli(["train", "draft", "--kind", "transformer", "--preset", "tiny", "--teacher", str(teacher),
                "--out", str(draft), "--steps", "2"] + common) == 0
    config = json.loads((draft / "config.json").read_text())
    assert config["mmgen_training"]["steps"] == 2 and load_vocabulary(draft) is None   # a draft replies to no one
    assert config["vocab_size"] == json.loads((teacher / "config.json").read_text())["vocab_size"]


def test_jsonl_conversations_read_the_export_format(tmp_path, tiny_vq):
    from mmgen.data import jsonl_conversations
    from mmgen.world.conversation import sample_conversation
    from mmgen.world.export import export
    path, n_images = export(tmp_path / "data", n=5, split="train", seed=0)
    vq = VQTokenizer.from_pretrained(tiny_vq)
    convs = list(jsonl_conversations(path, vq.encode, repeat=False))
    assert len(convs) == 5
    for i, conv in enumerate(convs):
        world = sample_conversation(i, split="train")
        assert [(t.role, t.text, t.codes is not None) for t in conv.turns] == \
               [(t.role, t.text, t.image is not None) for t in world.turns]
    assert sum(t.codes is not None for c in convs for t in c.turns) == n_images


def test_stream_loss_matches_the_masked_full_softmax():
    """The sliced, label-only, mask-free loss equals cross-entropy of the full model run with a
    padding mask, its logits restricted to the ids the grammar allows at each position."""
    from mmgen.data import IGNORE_INDEX
    from mmgen.model import build_model
    from mmgen.train.loss import StreamLoss
    torch.manual_seed(0)
    vocab, offset = 300, 200
    lm = build_model("tiny", vocab, seed=0).eval()
    ids = torch.randint(0, vocab, (3, 24))
    mask = torch.ones_like(ids)
    mask[1, 15:] = 0                       # right padding
    mask[2, 20:] = 0
    labels = ids.clone()
    labels[mask == 0] = IGNORE_INDEX
    labels[:, :6] = IGNORE_INDEX           # the prompt has no loss
    out = StreamLoss(lm, offset)(ids, labels)
    logits = lm(input_ids=ids, attention_mask=mask).logits[:, :-1]
    target = labels[:, 1:]
    total, n = 0.0, 0
    for b in range(3):
        for t in range(target.shape[1]):
            y = int(target[b, t])
            if y == IGNORE_INDEX:
                continue
            lo, hi = (offset, vocab) if y >= offset else (0, offset)
            total -= torch.log_softmax(logits[b, t, lo:hi], -1)[y - lo]
            n += 1
    assert out["image"][1] + out["text"][1] == n
    assert out["loss"].item() == pytest.approx(total.item() / n, rel=1e-4)


def test_text_weight_reweights_words_but_not_the_reported_losses():
    from mmgen.data import IGNORE_INDEX
    from mmgen.model import build_model
    from mmgen.train.loss import StreamLoss
    torch.manual_seed(0)
    vocab, offset = 300, 200
    lm = build_model("tiny", vocab, seed=0).eval()
    ids = torch.cat([torch.randint(0, offset, (2, 10)), torch.randint(offset, vocab, (2, 14))], 1)
    labels = ids.clone()
    labels[:, :3] = IGNORE_INDEX
    plain, weighted = StreamLoss(lm, offset)(ids, labels), StreamLoss(lm, offset, text_weight=4.0)(ids, labels)
    (si, ni), (st, nt) = plain["image"], plain["text"]
    assert ni > 0 and nt > 0
    assert weighted["image"][0].item() == pytest.approx(si.item()) and weighted["text"][1] == nt
    assert weighted["loss"].item() == pytest.approx((si + 4 * st).item() / (ni + 4 * nt), rel=1e-5)
    assert weighted["loss"].item() != pytest.approx(plain["loss"].item(), rel=1e-3)
    with pytest.raises(ValueError, match="text_weight"):
        StreamLoss(lm, offset, text_weight=0)
