"""Pre-encoded shards: what is written reads back exactly, whole or not at all, and only with its VQ."""
from __future__ import annotations

import json
import random

import pytest
import torch
from safetensors.torch import load_file, save_file

from mmgen.cli import main as cli
from mmgen.shards import ShardError, read_shard, vq_fingerprint, write_shard
from mmgen.stream import IMAGE_TOKENS, Conversation, Turn
from mmgen.vq import VQTokenizer

CODEBOOK = 1000


@pytest.fixture(scope="module")
def tiny_vq(tiny_checkpoints):
    return tiny_checkpoints / "vq"


@pytest.fixture(scope="module")
def other_vq(tiny_vq, tmp_path_factory):
    """The tiny VQ with one weight changed: another tokenizer, with the same codebook."""
    path = tmp_path_factory.mktemp("other-vq")
    vq = VQTokenizer.from_pretrained(tiny_vq)
    with torch.no_grad():
        next(vq.parameters()).add_(0.5)
    vq.save_pretrained(path)
    return path


def conversations(n: int, seed: int = 0) -> list[Conversation]:
    """Random conversations: user and assistant turns, with and without pictures, odd text."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        turns = []
        for j in range(rng.randint(1, 4)):
            for role in ("user", "assistant"):
                codes = tuple(rng.randrange(CODEBOOK) for _ in range(IMAGE_TOKENS)) if rng.random() < 0.5 else None
                turns.append(Turn(role=role, text=f"conv {k} turn {j} — «{role}»\n\"quoted\"", codes=codes))
        out.append(Conversation(tuple(turns)))
    return out


def test_round_trip_is_exact_and_repeat_loops(tmp_path):
    source = conversations(7)
    meta = write_shard(source, tmp_path / "shard", codebook_size=CODEBOOK, vq_fingerprint="abc")
    assert meta["conversations"] == 7
    assert meta["pictures"] == sum(t.codes is not None for c in source for t in c.turns)
    codes = load_file(str(tmp_path / "shard" / "codes.safetensors"))["codes"]
    assert codes.dtype == torch.int16 and tuple(codes.shape) == (meta["pictures"], IMAGE_TOKENS)
    assert list(read_shard(tmp_path / "shard", repeat=False)) == source
    again = read_shard(tmp_path / "shard", codebook_size=CODEBOOK, vq_fingerprint="abc")
    assert [next(again) for _ in range(15)] == source + source + source[:1]


def test_write_is_atomic(tmp_path):
    write_shard(conversations(3), tmp_path / "shard", codebook_size=CODEBOOK, vq_fingerprint="abc")

    def broken():
        yield from conversations(2, seed=1)
        raise RuntimeError("the encoder died")

    with pytest.raises(RuntimeError):
        write_shard(broken(), tmp_path / "shard", codebook_size=CODEBOOK, vq_fingerprint="abc")
    assert list(read_shard(tmp_path / "shard", repeat=False)) == conversations(3), "the old shard is intact"
    write_shard(conversations(2, seed=2), tmp_path / "shard", codebook_size=CODEBOOK, vq_fingerprint="abc")
    assert list(read_shard(tmp_path / "shard", repeat=False)) == conversations(2, seed=2), "replaced whole"
    assert [p.name for p in tmp_path.iterdir()] == ["shard"], "no temporary folders are left"
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    with pytest.raises(ShardError, match="not a shard"):
        write_shard(conversations(1), tmp_path / "notes", codebook_size=CODEBOOK, vq_fingerprint="abc")
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep me"
    with pytest.raises(ShardError, match="outside the codebook"):
        write_shard(conversations(2), tmp_path / "small", codebook_size=10, vq_fingerprint="abc")


def test_damaged_or_foreign_shards_are_refused(tmp_path):
    shard = tmp_path / "shard"
    write_shard(conversations(3), shard, codebook_size=CODEBOOK, vq_fingerprint="abc")
    with pytest.raises(ShardError, match="different image tokenizer.*mmgen data encode"):
        read_shard(shard, codebook_size=CODEBOOK, vq_fingerprint="xyz")
    with pytest.raises(ShardError, match="different image tokenizer"):
        read_shard(shard, codebook_size=4096)
    with pytest.raises(ShardError, match="no meta.json"):
        read_shard(tmp_path)
    with pytest.raises(ShardError, match="not a shard folder"):
        read_shard(tmp_path / "missing")

    codes = shard / "codes.safetensors"
    good = codes.read_bytes()
    codes.write_bytes(good[:len(good) // 2])                     # truncated
    with pytest.raises(ShardError, match="codes.safetensors is damaged"):
        read_shard(shard)
    codes.write_bytes(good)
    save_file({"codes": torch.zeros(2, IMAGE_TOKENS, dtype=torch.int16)}, str(codes))   # valid file, wrong codes
    with pytest.raises(ShardError, match="damaged"):
        read_shard(shard)
    codes.write_bytes(good)
    assert len(list(read_shard(shard, repeat=False))) == 3

    meta = json.loads((shard / "meta.json").read_text())
    (shard / "meta.json").write_text(json.dumps({**meta, "format": "mmgen-shard-0"}))
    with pytest.raises(ShardError, match="format 'mmgen-shard-0'"):
        read_shard(shard)
    (shard / "meta.json").write_text("{not json")
    with pytest.raises(ShardError, match="not valid JSON"):
        read_shard(shard)


def test_fingerprint_names_the_weights(tiny_vq, other_vq):
    assert vq_fingerprint(tiny_vq) == vq_fingerprint(tiny_vq) and len(vq_fingerprint(tiny_vq)) == 16
    assert vq_fingerprint(other_vq) != vq_fingerprint(tiny_vq)


def test_encode_command_and_training_on_a_shard(tmp_path, tiny_vq, other_vq, capsys):
    from mmgen.data import CodeCache, world_conversations
    shard = tmp_path / "shard"
    assert cli(["data", "encode", "--world", "5", "--start", "3", "--batch", "4", "--vq", str(tiny_vq),
                "--out", str(shard)]) == 0
    vq = VQTokenizer.from_pretrained(tiny_vq)
    got = list(read_shard(shard, repeat=False, codebook_size=vq.codebook_size, vq_fingerprint=vq_fingerprint(tiny_vq)))
    want = world_conversations(CodeCache(vq.encode), start=3, chunk=4)      # as --batch 4 encodes them
    assert got == [next(want) for _ in range(5)]

    capsys.readouterr()
    (tmp_path / "bad.jsonl").write_text("not json\n")
    for bad in (["--out", str(tmp_path / "x")],                                      # no source
                ["--world", "2", "--jsonl", "a.jsonl", "--out", str(tmp_path / "x")],   # two sources
                ["--world", "0", "--out", str(tmp_path / "x")],
                ["--jsonl", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x")],
                ["--jsonl", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "x")],
                ["--world", "2", "--out", str(tmp_path / "x"), "--vq", str(tmp_path)]):
        assert cli(["data", "encode"] + bad) == 2
        err = capsys.readouterr().err.split("\r")[-1]           # what stays on screen after a progress bar
        assert err.startswith("mmgen data encode: ") and err.count("\n") == 1, err
    with pytest.raises(SystemExit) as exit_:
        cli(["data", "encode", "--world", "two", "--out", str(tmp_path / "x")])
    assert exit_.value.code == 2
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.*"))

    common = ["train", "lm", "--preset", "tiny", "--vq", str(tiny_vq), "--data", str(shard), "--steps", "2",
              "--batch-tokens", "1500", "--max-len", "700", "--eval-every", "2", "--save-every", "2", "--threads", "1"]
    assert cli(common + ["--out", str(tmp_path / "lm")]) == 0
    assert json.loads((tmp_path / "lm" / "config.json").read_text())["mmgen_training"]["steps"] == 2
    with pytest.raises(SystemExit, match="different image tokenizer"):
        cli(common[:5] + [str(other_vq)] + common[6:] + ["--out", str(tmp_path / "lm2")])


def test_encode_jsonl(tmp_path, tiny_vq):
    from mmgen.data import jsonl_conversations
    from mmgen.world.export import export
    path, _ = export(tmp_path / "real", n=2, split="train", seed=0)
    assert cli(["data", "encode", "--jsonl", str(path), "--vq", str(tiny_vq), "--out", str(tmp_path / "shard")]) == 0
    vq = VQTokenizer.from_pretrained(tiny_vq)
    assert list(read_shard(tmp_path / "shard", repeat=False)) == list(jsonl_conversations(path, vq.encode, repeat=False))
