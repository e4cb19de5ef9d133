"""How much the transformer's pictures depend on what they should depend on.

    python benchmarks/conditioning.py [--checkpoint checkpoints/lm] [--n 48] [--parts create,sign,edit,read]

- create: image loss of held-out first create turns with their own words, with another
  conversation's words, and with the words emptied (user's alone, then user's and assistant's);
- sign: per-code image loss of held-out creates with a sign, on the codes under the letters and
  elsewhere, with the word as asked and with every letter of it shifted 13 places (ROT13, in the
  request and the plan alike): a model that draws the word's letters loses much more under the
  letters with the wrong word; one that draws letter-like glyphs whatever the word, about the same.
  The gap (ROT13 − own) per glyph code is the figure: each glyph code depends on one letter
  (world/lettering.py), so a model that reads the word gains nats on every one;
- edit: image loss of held-out edits given their own source picture vs another picture, and,
  given its own source, split into the codes the edit leaves as they were (same code at the same
  place in the source) and the codes it changes, with the mean probability of copying;
- read: held-out pictures with a sign brought by the user and asked its word in a held-out
  phrasing, answer teacher-forced: the share of the answer's letters the model ranks first, of
  words it ranks first letter by letter, and the answer's loss with the picture swapped for another
  sign's. Nothing in the conversation's words says the word, so only a model that reads the
  picture's codes gets the letters right; one that guesses from the words loses as much either way.
A model that follows its prompt shows a gap in the first; one that copies what it edits, in the
second, and a loss near zero on the unchanged codes. Prints figures (cross-entropy per image
code, nats; for read, per token of the answer).
"""
from __future__ import annotations

import argparse
import re

import torch

from mmgen.data import CodeCache, collate, world_to_stream
from mmgen.model import load_model
from mmgen.stream import Conversation, Stream, Turn
from mmgen.text import TextTokenizer
from mmgen.train.common import autocast_dtype
from mmgen.train.loss import StreamLoss, _positions, _slice_logits
from mmgen.vq import VQTokenizer
from mmgen.world.conversation import sample_conversation
from mmgen.world import lettering


PARTS = ("create", "sign", "edit", "read")


def held_out(n: int, keep) -> list:
    out, seed = [], 0
    while len(out) < n:
        c = sample_conversation(seed, split="eval")
        seed += 1
        if keep(c):
            out.append(c)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="checkpoints/lm")
    ap.add_argument("--vq", default="checkpoints/vq")
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--parts", default="create,sign,edit,read", help="comma-separated: create, sign, edit, read")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    if parts - set(PARTS):
        ap.error(f"unknown parts {sorted(parts - set(PARTS))}")
    if args.threads:
        torch.set_num_threads(args.threads)
    vq = VQTokenizer.from_pretrained(args.vq).eval()
    stream = Stream(TextTokenizer.from_pretrained(args.checkpoint), vq.codebook_size)
    loss_model = StreamLoss(load_model(args.checkpoint).eval(), stream.image_offset)

    def image_loss(convs) -> float:
        batch = collate([stream.encode(c) for c in convs], stream.pad)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast_dtype() == "bf16"):
            out = loss_model(batch.input_ids, batch.labels)
        return float(out["image"][0] / out["image"][1])

    rotate = lambda xs: xs[1:] + xs[:1]   # noqa: E731

    if "create" in parts:
        create_part(args, vq, stream, image_loss, rotate)
    if "sign" in parts:
        sign_part(args, vq, stream, loss_model)
    if "edit" in parts:
        edit_part(args, vq, stream, loss_model, image_loss, rotate)
    if "read" in parts:
        read_part(args, vq, stream, loss_model, rotate)
    return 0


def create_part(args, vq, stream, image_loss, rotate) -> None:
    creates = world_to_stream(held_out(args.n, lambda c: c.turns[0].task == "create" and c.turns[0].image is None),
                              CodeCache(vq.encode))
    first = [Conversation(c.turns[:2]) for c in creates]
    words = [c.turns[0].text for c in first]
    replies = [c.turns[1].text for c in first]
    pictures = [c.turns[1].codes for c in first]
    make = lambda us, rs: [Conversation((Turn("user", u), Turn("assistant", r, codes=p)))   # noqa: E731
                           for u, r, p in zip(us, rs, pictures)]
    print(f"create, {len(first)} held-out turns (image loss, nats per code)")
    print(f"  own words                        {image_loss(first):.4f}")
    print(f"  another prompt's user words      {image_loss(make(rotate(words), replies)):.4f}")
    print(f"  user words emptied               {image_loss(make([''] * len(words), replies)):.4f}")
    print(f"  another turn's user + reply      {image_loss(make(rotate(words), rotate(replies))):.4f}")
    print(f"  user + reply words emptied       {image_loss(make([''] * len(words), [''] * len(words))):.4f}")


def sign_part(args, vq, stream, loss_model) -> None:
    signed = held_out(args.n, lambda c: c.turns[0].task == "create" and c.turns[0].image is None
                      and c.turns[1].image is not None and c.turns[1].image.sign is not None)
    signs = [Conversation(c.turns[:2]) for c in world_to_stream(signed, CodeCache(vq.encode))]
    index = torch.cat([letter_index(c.turns[1].image.sign) for c in signed])
    under = index >= 0
    rot13 = [Conversation(tuple(Turn(t.role, swap_word(t.text, w.turns[1].image.sign.word), codes=t.codes)
                                for t in c.turns)) for c, w in zip(signs, signed)]
    own, wrong = per_code_loss(loss_model.lm, stream, signs), per_code_loss(loss_model.lm, stream, rot13)
    print(f"sign, {len(signs)} held-out creates with a sign (nats per code)")
    print(f"  under the letters, its own word  {own[under].mean():.4f}  ({int(under.sum())} codes)")
    print(f"  under the letters, word ROT13    {wrong[under].mean():.4f}")
    print(f"  elsewhere, own word / ROT13      {own[~under].mean():.4f} / {wrong[~under].mean():.4f}")
    print(f"  gap under the letters            {(wrong[under] - own[under]).mean():.4f} nats per glyph code")
    gaps = [f"{(wrong[index == i] - own[index == i]).mean():+.3f}" for i in range(int(index.max()) + 1)]
    print(f"  gap by letter (1st, 2nd, …)      {' '.join(gaps)}")


def edit_part(args, vq, stream, loss_model, image_loss, rotate) -> None:
    edits = world_to_stream(held_out(args.n, lambda c: len(c.turns) >= 4 and c.turns[2].task == "edit"
                                     and c.turns[1].image is not None and c.turns[3].image is not None),
                            CodeCache(vq.encode))
    # the picture edited: the user's own when the request brings one, else the one drawn before it
    sources = [c.turns[2].codes or c.turns[1].codes for c in edits]
    as_edit = lambda srcs: [Conversation((Turn("user", c.turns[2].text, codes=s),   # noqa: E731
                                          Turn("assistant", c.turns[3].text, codes=c.turns[3].codes)))
                            for c, s in zip(edits, srcs)]
    print(f"edit, {len(edits)} held-out edits, source given as the user's picture")
    print(f"  its own source                   {image_loss(as_edit(sources)):.4f}")
    print(f"  another picture                  {image_loss(as_edit(rotate(sources))):.4f}")
    kept, changed, p_copy = copy_split(loss_model.lm, stream, as_edit(sources))
    print(f"  codes left as in the source      {kept.mean():.4f}  ({len(kept)} codes, "
          f"{len(kept) / (len(kept) + len(changed)):.0%}; mean p(copy) {p_copy.mean():.3f})")
    print(f"  codes the edit changes           {changed.mean():.4f}  ({len(changed)} codes)")


def read_part(args, vq, stream, loss_model, rotate) -> None:
    from mmgen.world.language import stream as seeded
    from mmgen.world.questions import WORD
    from mmgen.world.scene import sample_scene
    scenes, questions, i = [], [], 0
    while len(scenes) < args.n:
        rng = seeded("eval", i, "benchmark-read")
        scene, i = sample_scene(rng), i + 1
        if scene.sign is not None:
            scenes.append(scene)
            questions.append(WORD.pick(rng, "eval"))
    pictures = CodeCache(vq.encode).encode_scenes(scenes)
    ask = lambda pics: [Conversation((Turn("user", q, codes=p), Turn("assistant", s.sign.word)))   # noqa: E731
                        for q, p, s in zip(questions, pics, scenes)]
    own_hit, own_ce, words = answer_letters(loss_model.lm, stream, ask(pictures))
    _, other_ce, _ = answer_letters(loss_model.lm, stream, ask(rotate(pictures)))
    print(f"read, {len(scenes)} held-out user pictures with a sign, asked the word (answer teacher-forced)")
    print(f"  letters ranked first             {own_hit.float().mean():.3f}  ({len(own_hit)} letters)")
    print(f"  words ranked first throughout    {words.float().mean():.3f}")
    print(f"  answer loss, its own picture     {own_ce.mean():.4f} nats per token")
    print(f"  answer loss, another sign's      {other_ce.mean():.4f}")


def answer_letters(lm, stream: Stream, convs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Over each conversation's last reply (its text tokens, end of turn excluded): whether each
    token is the model's first choice [N], its cross-entropy [N], and whether all of a reply's
    tokens are [conversations]."""
    encoded = [stream.encode(c) for c in convs]
    batch = collate(encoded, stream.pad)
    target = batch.labels[:, 1:]
    reply = torch.zeros_like(target, dtype=torch.bool)
    for row, e in enumerate(encoded):      # the reply: the labelled text tokens after the last <assistant>
        start = max(j for j, i in enumerate(e.ids) if i == stream.assistant)
        for j in range(start + 1, len(e.ids)):
            reply[row, j - 1] = stream.is_text_id(e.ids[j])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast_dtype() == "bf16"):
        logp = torch.log_softmax(_slice_logits(lm, _positions(lm, batch.input_ids, reply), 0, stream.text_vocab), -1)
    y = target[reply]
    hit, ce = logp.argmax(-1) == y, -logp.gather(1, y[:, None])[:, 0]
    rows = torch.arange(len(encoded))[:, None].expand_as(reply)[reply]
    whole = torch.stack([hit[rows == r].all() for r in range(len(encoded))])
    return hit, ce, whole


def letter_index(sign) -> torch.Tensor:
    """[256] long, row-major: which letter of the word each code draws (−1 outside the letters)."""
    index = torch.full((16, 16), -1, dtype=torch.long)
    for i, (_, x, y) in enumerate(lettering.letter_cells(sign.word, sign.band)):
        index[y // 8:(y + lettering.CELL_H) // 8, x // 8] = i
    return index.flatten()


def swap_word(text: str, word: str) -> str:
    """`text` with the sign's word (as a whole word) shifted 13 letters along the alphabet."""
    other = "".join(chr((ord(ch) - 65 + 13) % 26 + 65) for ch in word)
    return re.sub(rf"\b{word}\b", other, text)


def image_logprobs(lm, stream: Stream, convs) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities over the codebook [N, K] at every labelled image code, conversation by
    conversation in stream order, and the codes there [N]."""
    batch = collate([stream.encode(c) for c in convs], stream.pad)
    target = batch.labels[:, 1:]
    where = target >= stream.image_offset
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast_dtype() == "bf16"):
        logp = torch.log_softmax(_slice_logits(lm, _positions(lm, batch.input_ids, where), stream.image_offset, None), -1)
    return logp, target[where] - stream.image_offset


def per_code_loss(lm, stream: Stream, convs) -> torch.Tensor:
    """Cross-entropy of every labelled image code [N]."""
    logp, y = image_logprobs(lm, stream, convs)
    return -logp.gather(1, y[:, None])[:, 0]


def copy_split(lm, stream: Stream, convs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-code cross-entropy of each edit's picture, split by whether the code equals the source's
    code at the same place; and the probability given to the source's code where it does."""
    logp, y = image_logprobs(lm, stream, convs)
    ce = -logp.gather(1, y[:, None])[:, 0]
    # the source's code at each labelled place: every conversation is [user picture, edit picture]
    source = torch.cat([torch.tensor(c.turns[0].codes) for c in convs])
    same = y == source
    return ce[same], ce[~same], logp[same].gather(1, y[same][:, None])[:, 0].exp()


if __name__ == "__main__":
    raise SystemExit(main())
