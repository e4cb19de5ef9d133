"""The neighbour table: a draft model for speculative decoding that costs nothing to run.

Why not a small transformer? On 2 CPU cores a step of the shipped transformer takes ~6 ms and a
step of a 2-layer, 2.4 M-parameter draft transformer ~1.2 ms (both bound by per-op overhead, not
by arithmetic), plus the sampling of each draft; k drafts cost k such steps in sequence. A
picture's codes are very predictable (the guided distribution puts 0.96 of its mass on one code
on average, docs/RESULTS.md), so a drafter only has to name the likeliest code, and most of what
decides it lies next to it: the codes above, to the left and above-right. A lookup table over
those three neighbours drafts in microseconds, so drafting 8 codes costs no more than drafting 1.

The table is distilled from the transformer (`fit`): on world pictures, teacher-forced, each
position's guided next-code distribution (the one sampling draws from) votes its top codes, by
mass, for that position's neighbourhood; the table keeps the winner. Unseen neighbourhoods back
off to (above, left), then (above), then the code above itself. Drafts are point masses, so a
draft x is accepted with probability p(x) and the output law is exactly plain decoding's
(speculative.verify).

The reply's words are drafted the same way: the likeliest next token after the last three (then
two, then one) tokens, counted over the assistant replies of the training conversations (a layout
plan is formulaic: "Here you go: a red circle in the top left on a white background."). Words
are decoded greedily, so a drafted word is kept exactly when it is the word the transformer picks.

Each neighbourhood also keeps its winner's share of the votes (`confidence`): about the chance a
draft from there is accepted. Drafters stop a round's drafts where that chance runs out
(speculative.CopyDrafter); drafts past a likely rejection only make the verify pass longer.

On disk (`checkpoints/draft/`): config.json {"kind": "neighbours", …} and table.safetensors with,
per level, the neighbourhoods [N, width] (−1 = outside the picture), their codes [N] and their
confidences [N] (float32; tables fitted before them load without), and the word contexts
[N, width] and their next tokens [N].
"""
from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch

from .io import atomic_folder, atomic_save_safetensors, atomic_write_json, read_json
from .sampling import SamplingConfig, next_token_probs
from .stream import IMAGE_SIDE, IMAGE_TOKENS, Conversation, Stream

KIND = "neighbours"
LEVELS = ("above,left,above_right", "above,left", "above")   # widest first; each backs off to the next
WORD_CONTEXT = 3                                            # tokens a word is drafted from, then 2, then 1
VOTES_PER_POSITION = 4                                      # a position votes its 4 likeliest codes
UNSEEN_CONFIDENCE = 0.0   # a neighbourhood no fitted picture showed: on 400 held-out pictures (96,000
                          # positions) the shipped table fell back 18 times and was never right


def neighbourhood(codes: Sequence[int], pos: int) -> tuple[int, int, int]:
    """(above, left, above-right) of raster position `pos`; −1 where that falls outside the picture.
    `codes` holds at least the first `pos` codes."""
    row, col = divmod(pos, IMAGE_SIDE)
    above = codes[pos - IMAGE_SIDE] if row else -1
    left = codes[pos - 1] if col else -1
    above_right = codes[pos - IMAGE_SIDE + 1] if row and col < IMAGE_SIDE - 1 else -1
    return above, left, above_right


class NeighbourTable:
    def __init__(self, codebook_size: int, levels: list[dict[tuple[int, ...], int]], info: dict | None = None,
                 words: list[dict[tuple[int, ...], int]] | None = None,
                 confidence: list[dict[tuple[int, ...], float]] | None = None):
        if len(levels) != len(LEVELS):
            raise ValueError(f"a neighbour table has {len(LEVELS)} levels, not {len(levels)}")
        if confidence is not None and (len(confidence) != len(levels)
                                       or any(c.keys() != t.keys() for c, t in zip(confidence, levels))):
            raise ValueError("a neighbour table's confidences must cover exactly its neighbourhoods")
        self.codebook_size = codebook_size
        self.levels = levels
        # per neighbourhood, how likely its code is to be accepted (fit: its share of the votes);
        # None for tables fitted before confidences were kept: drafts then run to their full length
        self.confidence = confidence
        self.words = words or [{} for _ in range(WORD_CONTEXT)]      # last 3 tokens, 2, 1 → next
        self.info = dict(info or {})

    def draft(self, codes: Sequence[int], pos: int) -> int:
        """The likeliest code at `pos` given the codes before it."""
        return self.draft_with_confidence(codes, pos)[0]

    def draft_with_confidence(self, codes: Sequence[int], pos: int) -> tuple[int, float | None]:
        """The likeliest code at `pos` and the chance it is the one drawn (None: not known)."""
        key = neighbourhood(codes, pos)
        for level, (width, table) in enumerate(zip((3, 2, 1), self.levels)):
            code = table.get(key[:width])
            if code is not None:
                return code, None if self.confidence is None else self.confidence[level][key[:width]]
        # the code above, else the one to the left: a guess nothing voted for
        return key[0] if key[0] >= 0 else max(key[1], 0), None if self.confidence is None else UNSEEN_CONFIDENCE

    def draft_words(self, ids: Sequence[int], k: int, stop: Sequence[int] = ()) -> list[int]:
        """Up to k tokens likely to follow `ids`, each drafted from the ones before it; the draft
        ends after a token in `stop` (a picture opening, the turn's end) or where nothing is known."""
        context, out = list(ids[-WORD_CONTEXT:]), []
        while len(out) < k:
            nxt = None
            for width, table in zip(range(WORD_CONTEXT, 0, -1), self.words):
                nxt = table.get(tuple(context[-width:])) if len(context) >= width else None
                if nxt is not None:
                    break
            if nxt is None:
                break
            out.append(nxt)
            context.append(nxt)
            if nxt in stop:
                break
        return out

    def __len__(self) -> int:
        return sum(len(t) for t in self.levels)

    # --- files ----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        tensors = {}
        for i, table in enumerate(self.levels):
            tensors[f"level{i}.neighbours"], tensors[f"level{i}.codes"] = _as_tensors(table, 3 - i)
            if self.confidence is not None:
                tensors[f"level{i}.confidence"] = _as_tensors(self.confidence[i], 3 - i, torch.float32)[1]
        for i, table in enumerate(self.words):
            tensors[f"words{i}.context"], tensors[f"words{i}.next"] = _as_tensors(table, WORD_CONTEXT - i)
        with atomic_folder(path) as tmp:
            atomic_save_safetensors(tensors, tmp / "table.safetensors")
            atomic_write_json(tmp / "config.json", {"kind": KIND, "codebook_size": self.codebook_size,
                                                    "levels": list(LEVELS), **self.info})

    @classmethod
    def load(cls, path: str | Path) -> "NeighbourTable":
        from safetensors.torch import load_file
        path = Path(path)
        config = read_json(path / "config.json")
        if config.get("kind") != KIND or config.get("levels") != list(LEVELS):
            raise ValueError(f"{path} is not a neighbour table (kind {config.get('kind')!r})")
        tensors = load_file(str(path / "table.safetensors"))
        size = int(config["codebook_size"])
        levels, confidence = [], []
        for i in range(len(LEVELS)):
            keys, codes = tensors[f"level{i}.neighbours"], tensors[f"level{i}.codes"]
            if keys.shape != (len(codes), 3 - i) or (len(codes) and not (0 <= int(codes.min()) and int(codes.max()) < size)):
                raise ValueError(f"{path}: level {i} of the table is malformed")
            keys = list(map(tuple, keys.tolist()))
            levels.append(dict(zip(keys, codes.tolist())))
            share = tensors.get(f"level{i}.confidence")
            if share is not None and (share.shape != codes.shape or (len(share) and not 0 <= float(share.min()) <= float(share.max()) <= 1)):
                raise ValueError(f"{path}: the confidences of level {i} are malformed")
            confidence.append(None if share is None else dict(zip(keys, share.tolist())))
        if any(c is None for c in confidence):          # a table fitted before confidences were kept
            confidence = None
        words = []
        for i in range(WORD_CONTEXT):
            keys, nxt = tensors.get(f"words{i}.context"), tensors.get(f"words{i}.next")
            if keys is None or nxt is None or keys.shape != (len(nxt), WORD_CONTEXT - i):
                raise ValueError(f"{path}: the table's words (level {i}) are missing or malformed")
            words.append(dict(zip(map(tuple, keys.tolist()), nxt.tolist())))
        info = {k: v for k, v in config.items() if k not in ("kind", "codebook_size", "levels")}
        return cls(size, levels, info, words, confidence)


def _as_tensors(table: dict[tuple[int, ...], int | float], width: int,
                dtype: torch.dtype = torch.int32) -> tuple[torch.Tensor, torch.Tensor]:
    keys = sorted(table)
    return (torch.tensor(keys, dtype=torch.int32).reshape(len(keys), width),
            torch.tensor([table[k] for k in keys], dtype=dtype))


def is_neighbour_table(path: str | Path) -> bool:
    try:
        return read_json(Path(path) / "config.json").get("kind") == KIND
    except (FileNotFoundError, ValueError):
        return False


# --- distillation -------------------------------------------------------------------------------
def create_turns(conversations: Iterable[Conversation]) -> Iterable[tuple[Conversation, tuple[int, ...]]]:
    """(the request, the picture drawn for it) for every conversation that opens with a picture
    drawn from words alone — the pictures the table drafts for (edits draft from their source)."""
    for conv in conversations:
        turns = conv.turns
        if len(turns) >= 2 and turns[0].role == "user" and turns[0].codes is None \
                and turns[1].role == "assistant" and turns[1].codes is not None:
            yield Conversation(turns[:2]), turns[1].codes


def fit_words(stream: Stream, conversations: Iterable[Conversation], *, count: int) -> list[dict]:
    """The likeliest next token after each context of 3, 2 and 1 tokens, over the words of every
    assistant reply in `count` conversations (a reply's words, then the token that ends them:
    <image> or <eot>). Pictures only need to be there, not right: give any codes."""
    counts = [defaultdict(Counter) for _ in range(WORD_CONTEXT)]
    for conv in itertools.islice(conversations, count):
        for i, turn in enumerate(conv.turns):
            if turn.role != "assistant":
                continue
            start = len(stream.encode(Conversation(conv.turns[:i]), generation_prompt=True).ids)
            ids = stream.encode(Conversation(conv.turns[:i + 1])).ids
            end = next((j for j in range(start, len(ids)) if ids[j] in (stream.image_start, stream.eot)), len(ids) - 1)
            for j in range(start, end + 1):
                for level, width in enumerate(range(WORD_CONTEXT, 0, -1)):
                    counts[level][tuple(ids[j - width:j])][ids[j]] += 1
    return [{key: c.most_common(1)[0][0] for key, c in level.items()} for level in counts]


@torch.inference_mode()
def fit(lm, stream: Stream, conversations: Iterable[Conversation], *, pictures: int, config: SamplingConfig,
        batch: int = 8, on_batch: Callable[[int], None] | None = None) -> NeighbourTable:
    """Distil `lm`'s guided picture distributions into a neighbour table (see the module docstring)."""
    if pictures < 1:
        raise ValueError(f"pictures must be at least 1, not {pictures}")
    votes: dict[tuple[int, ...], Counter] = defaultdict(Counter)
    chunk: list = []
    seen = 0
    for item in create_turns(conversations):
        chunk.append(item)
        if len(chunk) == batch or seen + len(chunk) == pictures:
            _vote(lm, stream, chunk, config, votes)
            seen += len(chunk)
            chunk = []
            if on_batch is not None:
                on_batch(seen)
            if seen == pictures:
                break
    if chunk:
        _vote(lm, stream, chunk, config, votes)
        seen += len(chunk)
    # a narrower level's votes are the sums of the wider neighbourhoods it contains
    levels: list[dict[tuple[int, ...], int]] = []
    confidence: list[dict[tuple[int, ...], float]] = []
    for width in (3, 2, 1):
        merged: dict[tuple[int, ...], Counter] = defaultdict(Counter)
        for key, counter in votes.items():
            merged[key[:width]].update(counter)
        levels.append({key: max(counter, key=counter.get) for key, counter in merged.items()})
        # the winner's mass over all the mass voted here (about one per position that voted), plus
        # one: roughly the chance a draft from this neighbourhood is accepted, shrunk where few voted
        confidence.append({key: counter[levels[-1][key]] / (sum(counter.values()) + 1)
                           for key, counter in merged.items()})
    info = {"pictures": seen, "cfg": config.cfg, "guide_reply": config.guide_reply,
            "temperature": config.temperature}
    return NeighbourTable(stream.codebook_size, levels, info, confidence=confidence)


def _vote(lm, stream: Stream, chunk: list, config: SamplingConfig, votes: dict) -> None:
    """Teacher-force one batch of pictures, cond rows then their unconditional twins, and vote."""
    guided = config.cfg != 1.0
    rows, starts = [], []
    for conv, codes in chunk:
        ids = stream.encode(conv).ids
        at = ids.index(stream.image_start)
        rows.append(ids[:at + IMAGE_TOKENS])              # the last code is never an input
        starts.append(at)
    if guided:
        for (conv, codes), at, cond in zip(chunk, starts, list(rows)):
            twin = stream.encode(Conversation(conv.turns[:1]), generation_prompt=True, drop_last_user_text=True).ids
            prompt = len(stream.encode(Conversation(conv.turns[:1]), generation_prompt=True).ids)
            reply = [] if config.guide_reply else cond[prompt:at]      # as generate.py builds the twin
            rows.append(twin + reply + cond[at:])
            starts.append(len(twin) + len(reply))
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), stream.pad, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)                 # right-padded: causal attention never sees the pad
    device = next(lm.parameters()).device
    hidden = lm.get_decoder()(input_ids=ids.to(device)).last_hidden_state
    at = torch.tensor(starts, device=device)[:, None] + torch.arange(IMAGE_TOKENS, device=device)
    hidden = hidden.gather(1, at[..., None].expand(-1, -1, hidden.shape[-1]))      # [R, 256, H]
    head = lm.get_output_embeddings().weight[stream.image_offset:stream.vocab_size]
    logits = torch.nn.functional.linear(hidden, head).float()                       # image codes only
    n = len(chunk)
    allowed = torch.ones(logits.shape[-1], dtype=torch.bool)
    probs = next_token_probs(logits[:n], logits[n:] if guided else None, allowed, config, in_image=True)
    top = probs.topk(VOTES_PER_POSITION, dim=-1)
    for (conv, codes), values, indices in zip(chunk, top.values.tolist(), top.indices.tolist()):
        for pos in range(IMAGE_TOKENS):
            counter = votes[neighbourhood(codes, pos)]
            for v, c in zip(values[pos], indices[pos]):
                counter[c] += v
