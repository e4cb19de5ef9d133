"""Scale-out: `accelerate launch` with two CPU processes (DDP over gloo) trains the tiny transformer
as one process does on the same global batch: the same training loss at every step and the same
weights after it (the validation loss after each step). Both runs are fp32 (--no-bf16), so the
only differences are the order of float sums."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import torch
import torch.distributed as dist

pytest.importorskip("accelerate.commands.launch", reason="accelerate is not installed")
needs_gloo = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed has no gloo backend here")

ROOT = Path(__file__).resolve().parents[1]
STEPS = 3
TIMEOUT = 900                 # seconds a run may take on a busy machine; a hung collective fails, not waits


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(tmp_path: Path) -> dict:
    """No accelerate config or ACCELERATE_* setting of the user's can reach the runs: HF_HOME (where
    `accelerate config` writes) is empty, and the processes use the CPU even where a GPU is."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCELERATE_")}
    env.update(HF_HOME=str(tmp_path / "hf"), ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    return env


def train(launch: list[str], out: Path, vq: Path, env: dict) -> dict:
    """`mmgen train lm` for STEPS steps of the tiny preset on world conversations → its mmgen_training."""
    flags = ["--preset", "tiny", "--vq", str(vq), "--out", str(out), "--steps", str(STEPS), "--warmup", "1",
             "--batch-tokens", "1500", "--max-len", "700", "--eval-every", "1", "--save-every", "1000",
             "--threads", "1", "--no-bf16"]
    done = subprocess.run(launch + ["-m", "mmgen.train.lm"] + flags, cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "config.json").read_text())["mmgen_training"]


@needs_gloo
def test_two_processes_train_as_one_on_the_same_global_batch(tmp_path, tiny_checkpoints):
    env = environment(tmp_path)
    vq = tiny_checkpoints / "vq"
    one = train([sys.executable], tmp_path / "one", vq, env)
    two = train([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                 "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                 "--main_process_port", str(free_port())], tmp_path / "two", vq, env)
    assert [(r["processes"], r["autocast"]) for r in one["runs"] + two["runs"]] == [(1, "no"), (2, "no")]
    assert two["steps"] == one["steps"] == STEPS and two["tokens"] == one["tokens"]
    assert [p["step"] for p in two["curve"]] == [p["step"] for p in one["curve"]] == list(range(1, STEPS + 1))
    # the weights moved, so the validation losses after each step test them
    assert one["curve"][0]["text"] != one["curve"][-1]["text"]
    for a, b in zip(one["curve"], two["curve"]):     # each value is rounded to 4 places
        for k in ("train", "text", "image"):
            assert b[k] == pytest.approx(a[k], abs=2e-4), (a["step"], k, a[k], b[k])


def test_shares_of_a_batch_add_up_to_its_loss():
    """In one process: the rows the N processes keep cover the batch once, and their losses (each
    over the global batch's weighted count / N), averaged, are the whole batch's loss. A process
    left without a row gets a padding row that adds nothing, yet gives every weight a gradient
    (zero), as DDP needs of each process."""
    from mmgen.data import IGNORE_INDEX, Batch
    from mmgen.model import build_model
    from mmgen.train.lm import share_of
    from mmgen.train.loss import StreamLoss
    torch.manual_seed(0)
    vocab, offset, pad = 300, 200, 0
    ids = torch.cat([torch.randint(1, offset, (5, 8)), torch.randint(offset, vocab, (5, 16))], 1)
    labels = ids.clone()
    labels[:, :4] = IGNORE_INDEX
    labels[3, 10:] = IGNORE_INDEX                         # rows of different weights
    batch = Batch(ids, labels, torch.ones_like(ids), ids.numel())
    loss = StreamLoss(build_model("tiny", vocab, seed=0), offset, text_weight=4.0)
    whole = loss(ids, labels)
    assert loss.weight(labels) == whole["image"][1] + 4.0 * whole["text"][1]
    for world in (2, 3):
        shares = [share_of(batch, rank, world, pad) for rank in range(world)]
        assert sorted(row for s in shares for row in s.input_ids.tolist()) == sorted(ids.tolist())
        norm = loss.weight(labels) / world
        mean = sum(loss(s.input_ids, s.labels, norm)["loss"] for s in shares) / world
        assert mean.item() == pytest.approx(whole["loss"].item(), rel=1e-5)
    one_row = Batch(ids[:1], labels[:1], torch.ones_like(ids[:1]), ids.shape[1])
    assert share_of(one_row, 0, 2, pad).input_ids.tolist() == ids[:1].tolist()
    padding = share_of(one_row, 1, 2, pad)
    assert padding.input_ids.tolist() == [[pad] * ids.shape[1]] and padding.n_tokens == 0
    out = loss(padding.input_ids, padding.labels, 1.0)["loss"]
    out.backward()
    assert out.item() == 0 and all(p.grad is not None and not p.grad.any() for p in loss.parameters())
