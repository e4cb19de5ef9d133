"""How fast the world feeds the transformer: conversations sampled, rendered, VQ-encoded and
turned into training ids, on one core.

    python benchmarks/data.py [--n 300] [--vq checkpoints/vq] [--threads 1]
"""
from __future__ import annotations

import argparse
import random
import time

import torch

from mmgen.data import CodeCache, encode_for_training, world_conversations
from mmgen.stream import Stream
from mmgen.text import TextTokenizer
from mmgen.vq import VQTokenizer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--vq", default="checkpoints/vq")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    vq = VQTokenizer.from_pretrained(args.vq).eval()
    stream = Stream(TextTokenizer.from_pretrained(), vq.codebook_size)
    cache = CodeCache(vq.encode)
    source = world_conversations(cache, split="train", start=10_000)
    next(source)                                    # warm-up: first batch, caches, kernels
    rng = random.Random(0)
    t0 = time.perf_counter()
    ids = pictures = 0
    for _ in range(args.n):
        conv = next(source)
        enc = encode_for_training(stream, conv, rng, max_len=1536)
        ids += len(enc.ids)
        pictures += sum(t.codes is not None for t in conv.turns)
    dt = time.perf_counter() - t0
    print(f"{args.n / dt:.0f} encoded conversations/s on {args.threads} thread(s) "
          f"({ids / args.n:.0f} ids and {pictures / args.n:.1f} pictures each; {ids / dt:.0f} ids/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
