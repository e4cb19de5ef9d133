"""How fast the data feeds the transformer, on one core: conversations turned into training ids.

Two paths:
- live: world conversations sampled, rendered and VQ-encoded as they are needed;
- shard: the same conversations VQ-encoded once (`mmgen data encode`; timed apart, as
  "encode once"), then read back from the shard (`read_shard`), with no image work at all.

    python benchmarks/data.py [--n 300] [--vq checkpoints/vq] [--threads 1]
"""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from itertools import islice
from pathlib import Path

import torch

from mmgen.data import CodeCache, encode_for_training, world_conversations
from mmgen.shards import read_shard, vq_fingerprint, write_shard
from mmgen.stream import Stream
from mmgen.text import TextTokenizer
from mmgen.vq import VQTokenizer

START = 10_000          # world seeds of the measured conversations


def measure(source, stream: Stream, n: int) -> tuple[float, int, int]:
    """Seconds to turn `n` conversations of `source` into training ids; ids and pictures seen."""
    rng = random.Random(0)
    t0 = time.perf_counter()
    ids = pictures = 0
    for conv in islice(source, n):
        enc = encode_for_training(stream, conv, rng, max_len=1536)
        ids += len(enc.ids)
        pictures += sum(t.codes is not None for t in conv.turns)
    return time.perf_counter() - t0, ids, pictures


def report(name: str, n: int, threads: int, dt: float, ids: int, pictures: int) -> None:
    print(f"{name}: {n / dt:.0f} encoded conversations/s on {threads} thread(s) "
          f"({ids / n:.0f} ids and {pictures / n:.1f} pictures each; {ids / dt:.0f} ids/s)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--vq", default="checkpoints/vq")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    vq = VQTokenizer.from_pretrained(args.vq).eval()
    stream = Stream(TextTokenizer.from_pretrained(), vq.codebook_size)

    live = world_conversations(CodeCache(vq.encode), split="train", start=START)
    measure(live, stream, 32)                       # warm-up: first batch, caches, kernels
    report("live ", args.n, args.threads, *measure(live, stream, args.n))

    with tempfile.TemporaryDirectory() as tmp:
        shard = Path(tmp) / "shard"
        t0 = time.perf_counter()
        write_shard(islice(world_conversations(CodeCache(vq.encode), split="train", start=START), args.n), shard,
                    codebook_size=vq.codebook_size, vq_fingerprint=vq_fingerprint(args.vq))
        encode_s = time.perf_counter() - t0
        print(f"encode once: {args.n} conversations into a shard in {encode_s:.1f} s "
              f"({args.n / encode_s:.0f} conversations/s)")
        source = read_shard(shard, codebook_size=vq.codebook_size, vq_fingerprint=vq_fingerprint(args.vq))
        measure(source, stream, 32)                 # warm-up
        report("shard", args.n, args.threads, *measure(source, stream, args.n))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
