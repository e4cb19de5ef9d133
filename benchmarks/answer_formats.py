"""Which answer format lets a small transformer pick things out by attribute?

Count, "is there …?" and "where are the …?" are the questions the shipped model gets wrong most
(0.4-0.7 on pictures, 0.5-0.7 on told scenes) while it describes the same pictures without a fault.
This trains two tiny transformers from nothing, for the same wall time, on told scenes only
(world.conversation.sample_told: a scene in words, then questions about it; no picture, so it
is cheap) and compares their answers on held-out told scenes, greedy and free-running:

    direct  the answers as the world writes them ("two", "none, so no", "the red circle …")
    walk    count, exists and locate answered after walking through the shapes in reading order,
            each marked with the running count when it matches and "no" when it does not
            (world.questions.walk, what `mmgen train lm --walk-rate` trains): "the red circle at the
            top: one, the blue star on the left: no, the green circle in the center: two — two"

    python benchmarks/answer_formats.py --minutes 15            # each format trains 15 minutes
    python benchmarks/answer_formats.py --minutes 15 --formats walk

It prints, per format, steps, tokens (padding left out), and exact answers by question kind (for
walked count, exists and locate answers, the part after the walk; every other answer whole).
Training scenes include drills (world.conversation.DRILL_RATE); the held-out ones have none and use
the eval split's held-out phrasings. A comparison means something only once both models answer the
questions neither format changes (describe, word) well.
"""
from __future__ import annotations

import argparse
import collections
import math
import time

import torch
from tokenizers import Tokenizer
from transformers import LlamaConfig, LlamaForCausalLM

from mmgen.world.conversation import sample_told
from mmgen.world.questions import WALK_KINDS, final_answer, walked_answer
from mmgen.world.scene import Scene

FORMATS = ("direct", "walk")


class Encoder:
    """Told conversations as ids: the text tokenizer's ids plus three role tokens; loss on replies.
    Not mmgen.stream: told scenes have no picture, and the stream's vocabulary is mostly image ids a
    tiny text-only model would carry unused."""

    def __init__(self, tokenizer: str, fmt: str):
        self.tok = Tokenizer.from_file(tokenizer)
        base = self.tok.get_vocab_size()
        self.user, self.assistant, self.eot = base, base + 1, base + 2
        self.vocab, self.fmt = base + 3, fmt

    def text(self, s: str) -> list[int]:
        return self.tok.encode(s).ids

    def turns(self, conv) -> list[tuple[str, dict, str, str]]:
        """(kind, meta, question, answer in this format) for each exchange."""
        out = []
        for u, a in zip(conv.turns[::2], conv.turns[1::2]):
            kind = (u.meta or {}).get("question", "")
            answer = a.text
            if self.fmt == "walk" and "told" in (u.meta or {}):
                answer = walked_answer(Scene.from_dict(u.meta["told"]), kind, u.meta["about"], a.text)
            out.append((kind, u.meta or {}, u.text, answer))
        return out

    def prompt(self, question: str) -> list[int]:
        return [self.user] + self.text(question) + [self.eot, self.assistant]

    def conversation(self, conv) -> tuple[list[int], list[int]]:
        ids, loss = [], []
        for _, _, q, a in self.turns(conv):
            p, r = self.prompt(q), self.text(a) + [self.eot]
            ids += p + r
            loss += [0] * len(p) + [1] * len(r)
        return ids, loss


def batch(enc: Encoder, seeds, max_len: int):
    """(ids, labels, tokens): right-padded with end-of-turn (label -100); tokens leaves padding out."""
    rows = [enc.conversation(sample_told(s, "train")) for s in seeds]
    width = min(max_len, max(len(i) for i, _ in rows))
    ids = torch.full((len(rows), width), enc.eot)
    labels = torch.full((len(rows), width), -100)
    for r, (i, l) in enumerate(rows):
        i, l = i[:width], l[:width]
        ids[r, :len(i)] = torch.tensor(i)
        labels[r, :len(i)] = torch.tensor([t if m else -100 for t, m in zip(i, l)])
    return ids, labels, sum(min(width, len(i)) for i, _ in rows)


def tiny_model(vocab: int, args) -> LlamaForCausalLM:
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=args.width, intermediate_size=4 * args.width,
                      num_hidden_layers=args.layers, num_attention_heads=args.width // 32,
                      num_key_value_heads=args.width // 32, max_position_embeddings=1024, tie_word_embeddings=True)
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg)


def train(enc: Encoder, args) -> tuple[LlamaForCausalLM, int, int]:
    model = tiny_model(enc.vocab, args)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05, betas=(0.9, 0.95))
    start, step, tokens, seed = time.time(), 0, 0, 0
    budget = args.minutes * 60
    while (elapsed := time.time() - start) < budget:
        lr = args.lr * min(1.0, (step + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * elapsed / budget)))
        for g in opt.param_groups:
            g["lr"] = lr
        ids, labels, real = batch(enc, range(seed, seed + args.batch), args.max_len)
        seed += args.batch
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step, tokens = step + 1, tokens + real
        if step % 200 == 0:
            print(f"  {enc.fmt} step {step} loss {loss.item():.3f} {elapsed / 60:.1f} min", flush=True)
    return model, step, tokens


@torch.no_grad()
def reply(model, enc: Encoder, context: list[int], limit: int = 80) -> str:
    """The greedy reply to `context`, up to its end-of-turn token ("" when it runs past `limit`)."""
    out = model.generate(torch.tensor([context]), max_new_tokens=limit, do_sample=False,
                         eos_token_id=enc.eot, pad_token_id=enc.eot)[0, len(context):].tolist()
    if enc.eot not in out:
        return ""
    return enc.tok.decode(out[:out.index(enc.eot)])


def evaluate(model, enc: Encoder, n: int) -> dict[str, list[bool]]:
    """Greedy answers to the questions of n held-out told scenes, earlier exchanges as written."""
    model.eval()
    right = collections.defaultdict(list)
    for seed in range(n):
        context = []
        for kind, meta, q, a in enc.turns(sample_told(seed, "eval", drill_rate=0.0)):
            got = reply(model, enc, context + enc.prompt(q))
            right[kind].append(final_answer(got, kind) == final_answer(a, kind))
            context += enc.prompt(q) + enc.text(a) + [enc.eot]
    return right


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--formats", default=",".join(FORMATS))
    p.add_argument("--minutes", type=float, default=15)
    p.add_argument("--n", type=int, default=150, help="held-out told scenes to answer")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--max-len", type=int, default=640)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tokenizer", default="tokenizer/tokenizer.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if unknown := set(args.formats.split(",")) - set(FORMATS):
        p.error(f"unknown formats {sorted(unknown)}: {', '.join(FORMATS)}")
    results = {}
    for fmt in args.formats.split(","):
        enc = Encoder(args.tokenizer, fmt)
        model, steps, tokens = train(enc, args)
        results[fmt] = (steps, tokens, evaluate(model, enc, args.n))
        right = sum(results[fmt][2].values(), [])
        print(f"{fmt}: {steps} steps, all {sum(right) / len(right):.3f}", flush=True)
    kinds = sorted({k for *_, r in results.values() for k in r})
    print(f"\n{'kind':14}" + "".join(f"{f:>16}" for f in results))
    for k in kinds + ["all", "walked"]:
        cells = []
        for *_, r in results.values():
            got = sum((r[x] for x in (kinds if k == "all" else WALK_KINDS if k == "walked" else [k])), [])
            cells.append(f"{sum(got):>5} / {len(got):<4} {sum(got) / max(1, len(got)):.2f}")
        print(f"{k:14}" + "".join(f"{c:>16}" for c in cells))
    for f, (steps, tokens, _) in results.items():
        print(f"{f}: {steps} steps, {tokens / 1e6:.1f} M tokens in {args.minutes} min")


if __name__ == "__main__":
    main()
