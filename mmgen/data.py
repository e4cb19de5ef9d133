"""Training data for the transformer: conversations → padded batches of ids.

Two sources, one format (`stream.Conversation`, pictures as VQ codes):
- the procedural world, sampled on the fly (`world_conversations`): every picture is rendered
  and VQ-encoded once, in batches, and its codes cached by the scene's exact geometry;
- real conversations in JSONL (`jsonl_conversations`), the format `mmgen world export` writes:
  `{"id": ..., "messages": [{"role": "user"|"assistant", "text": ..., "image": "path.png"|null}]}`.

`batches` groups conversations of similar length under a token budget (little padding without
packing, so attention never crosses conversations) and applies the CFG dropout: each user
message's words are emptied with a small probability, which teaches the unconditional branch
(in conversations with a picture only: a told scene has none to guide).
"""
from __future__ import annotations

import json
import random
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch

from .stream import Conversation, Stream, Turn

CODE_CACHE_SIZE = 50_000          # pictures whose codes are kept (≈ 256 ints each)
CFG_DROPOUT = 0.1                 # probability that a user message's words are emptied
REPLY_DROPOUT = 0.5               # ... and, when they are, that the picture reply's own words are too
IGNORE_INDEX = -100


class CodeCache:
    """Scene geometry → VQ codes, least recently used first out."""

    def __init__(self, encode_images: Callable, size: int = CODE_CACHE_SIZE):
        self.encode_images = encode_images        # list[PIL] -> LongTensor [B, 16, 16]
        self.size = size
        self._codes: OrderedDict[str, tuple[int, ...]] = OrderedDict()

    @staticmethod
    def key(scene) -> str:
        return json.dumps(scene.to_json_dict(), sort_keys=True)

    def encode_scenes(self, scenes: list) -> list[tuple[int, ...]]:
        from .world import render
        keys = [self.key(s) for s in scenes]
        missing = list(dict.fromkeys(k for k in keys if k not in self._codes))
        if missing:
            by_key = dict(zip(keys, scenes))
            codes = self.encode_images([render(by_key[k]) for k in missing])
            for k, c in zip(missing, codes):
                self._codes[k] = tuple(c.reshape(-1).tolist())
        out = []
        for k in keys:
            self._codes.move_to_end(k)
            out.append(self._codes[k])
        while len(self._codes) > self.size:
            self._codes.popitem(last=False)
        return out


def world_to_stream(conversations: list, cache: CodeCache) -> list[Conversation]:
    """World conversations (pictures as Scenes) → stream conversations (pictures as codes)."""
    scenes = [t.image for c in conversations for t in c.turns if t.image is not None]
    return with_codes(conversations, cache.encode_scenes(scenes))


def with_codes(conversations: list, codes: Iterable[tuple[int, ...]]) -> list[Conversation]:
    """World conversations → stream conversations, given each picture turn's codes in reading order."""
    codes = iter(codes)
    return [Conversation(tuple(Turn(role=t.role, text=t.text, codes=next(codes) if t.image is not None else None)
                               for t in c.turns)) for c in conversations]


def world_conversations(cache: CodeCache, *, split: str = "train", start: int = 0, step: int = 1,
                        chunk: int = 32, mix: dict | None = None) -> Iterator[Conversation]:
    """An endless stream of world conversations with seeds start, start+step, … (one slice per rank);
    `mix`: the shares of told scenes, sign conversations, edit chains, quizzes and group conversations,
    {"told_rate": …, "sign_rate": …, "chain_rate": …, "quiz_rate": …, "group_rate": …}
    (world.conversation.sample_conversation)."""
    from .world.conversation import sample_conversation
    seed = start
    while True:
        batch = []
        for _ in range(chunk):
            batch.append(sample_conversation(seed, split=split, **(mix or {})))
            seed += step
        yield from world_to_stream(batch, cache)


def render_world_chunk(seeds: list[int], split: str, mix: dict | None = None) -> tuple[list, torch.Tensor, list[int]]:
    """The CPU half of `world_conversations`, for worker processes: sample the conversations of
    `seeds` and render each distinct picture once → (world conversations, uint8 [P, 3, 128, 128],
    the row of each picture turn in reading order; a chunk of told scenes alone has no picture)."""
    import numpy as np

    from .world import render
    from .world.conversation import sample_conversation
    conversations = [sample_conversation(s, split=split, **(mix or {})) for s in seeds]
    rows: dict[str, int] = {}
    pictures, order = [], []
    for c in conversations:
        for t in c.turns:
            if t.image is None:
                continue
            key = CodeCache.key(t.image)
            if key not in rows:
                rows[key] = len(pictures)
                pictures.append(np.asarray(render(t.image), dtype=np.uint8))
            order.append(rows[key])
    if not pictures:
        return conversations, torch.empty(0, 3, 128, 128, dtype=torch.uint8), order
    images = torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2).contiguous()
    return conversations, images, order


class _WorldChunks(torch.utils.data.IterableDataset):
    """Chunk c holds seeds start + (c·chunk + j)·step; worker w of W renders chunks w, w+W, … so the
    DataLoader, which takes one item from each worker in turn, yields them in seed order."""

    def __init__(self, split: str, start: int, step: int, chunk: int, mix: dict | None = None):
        self.split, self.start, self.step, self.chunk, self.mix = split, start, step, chunk, mix

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        w, n = (0, 1) if info is None else (info.id, info.num_workers)
        c = w
        while True:
            seeds = [self.start + (c * self.chunk + j) * self.step for j in range(self.chunk)]
            yield render_world_chunk(seeds, self.split, self.mix)
            c += n


def world_conversations_parallel(encode_pixels: Callable, *, workers: int, split: str = "train",
                                 start: int = 0, step: int = 1, chunk: int = 64,
                                 mix: dict | None = None) -> Iterator[Conversation]:
    """`world_conversations` with the rendering spread over `workers` processes: the same
    conversations in the same order. `encode_pixels` takes uint8 [P, 3, 128, 128] → codes [P, 16, 16]
    (on a GPU the tokenizer keeps up with many renderers; one process rendering does not feed it)."""
    loader = torch.utils.data.DataLoader(_WorldChunks(split, start, step, chunk, mix), batch_size=None,
                                         num_workers=workers, prefetch_factor=4)
    # the workers fork here, in the caller's thread (not later, from a prefetching thread)
    return _assemble(iter(loader), encode_pixels)


def _assemble(chunks, encode_pixels: Callable) -> Iterator[Conversation]:
    for conversations, images, order in chunks:
        codes = [tuple(row) for row in encode_pixels(images).reshape(len(images), -1).tolist()] if len(images) else []
        yield from with_codes(conversations, (codes[r] for r in order))


def prefetched(iterator: Iterable, depth: int = 8) -> Iterator:
    """`iterator`'s items, made ahead in a background thread (up to `depth` waiting). Making a
    batch is Python work; a GPU step mostly waits on the device, so the two overlap. An exception
    in the thread is raised here, at the item where it happened. Closing this generator (or
    dropping it) stops the thread at its next item."""
    import queue
    import threading
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                items.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def fill():
        try:
            for item in iterator:
                if not put((item, None)):
                    return
        except BaseException as e:          # noqa: BLE001 - handed to the consumer
            put((None, e))
            return
        put((done, None))

    thread = threading.Thread(target=fill, daemon=True, name="prefetch")
    thread.start()
    try:
        while True:
            item, error = items.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=10)


VALIDATION_CONVERSATIONS = 48      # the transformer's held-out validation set: the first eval-split conversations


def validation_conversations(encode_images: Callable, n: int = VALIDATION_CONVERSATIONS) -> list[Conversation]:
    """The held-out conversations `mmgen train lm` reports its validation loss on (the first n)."""
    source = world_conversations(CodeCache(encode_images), split="eval")
    return [next(source) for _ in range(n)]


def jsonl_conversations(path: str | Path, encode_images: Callable, *, repeat: bool = True) -> Iterator[Conversation]:
    """Real conversations from JSONL (`mmgen world export`'s format; image paths relative to the
    file). A malformed line stops training with its file and line number (world.export.DatasetError)."""
    from .world.export import iter_jsonl
    while True:
        n = 0
        for example in iter_jsonl(path):
            pictures = [m.image.convert("RGB") for m in example.messages if m.image is not None]
            codes = iter(encode_images(pictures)) if pictures else iter(())
            turns = tuple(Turn(role=m.role, text=m.text or "",
                               codes=tuple(next(codes).reshape(-1).tolist()) if m.image is not None else None)
                          for m in example.messages)
            n += 1
            yield Conversation(turns)
        if not repeat:
            return
        if n == 0:
            raise ValueError(f"{path} holds no conversation")


@dataclass
class Batch:
    input_ids: torch.Tensor        # [B, L]
    labels: torch.Tensor           # [B, L], IGNORE_INDEX where there is no loss
    attention_mask: torch.Tensor   # [B, L]
    n_tokens: int                  # real (non-pad) tokens

    def to(self, device) -> "Batch":
        return Batch(self.input_ids.to(device), self.labels.to(device), self.attention_mask.to(device), self.n_tokens)


def encode_for_training(stream: Stream, conversation: Conversation, rng: random.Random, *,
                        max_len: int, cfg_dropout: float = CFG_DROPOUT):
    conversation = stream.fit(conversation, max_len)
    turns = conversation.turns
    dropped = frozenset(i for i, t in enumerate(turns) if t.role == "user" and rng.random() < cfg_dropout)
    # the dropout trains guidance's unconditional branch, which only a picture uses; a conversation with
    # none (a told scene) keeps its words, or every answer after its emptied description would be a
    # guess (the draws are made all the same, so other conversations' dropout stays as it was)
    if all(t.codes is None for t in turns):
        dropped = frozenset()
    # guidance's unconditional twin may read the reply's words before its picture or not
    # (SamplingConfig.guide_reply, generate.py): both kinds of twin are trained
    silent = frozenset(i + 1 for i in sorted(dropped) if i + 1 < len(turns) and turns[i + 1].codes is not None
                       and rng.random() < REPLY_DROPOUT)
    return stream.encode(conversation, drop_user_text=dropped, drop_reply_text=silent)


def collate(encoded: list, pad_id: int) -> Batch:
    length = max(len(e.ids) for e in encoded)
    ids = torch.full((len(encoded), length), pad_id, dtype=torch.long)
    labels = torch.full((len(encoded), length), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(encoded), length), dtype=torch.long)
    for i, e in enumerate(encoded):
        n = len(e.ids)
        ids[i, :n] = torch.tensor(e.ids)
        mask[i, :n] = 1
        lab = torch.tensor(e.ids)
        lab[~torch.tensor(e.loss_mask)] = IGNORE_INDEX
        labels[i, :n] = lab
    return Batch(ids, labels, mask, int(mask.sum()))


def batches(stream: Stream, conversations: Iterable[Conversation], *, batch_tokens: int, max_len: int,
            seed: int = 0, pool: int = 64, cfg_dropout: float = CFG_DROPOUT) -> Iterator[Batch]:
    """Batches of at most `batch_tokens` (padded) tokens, from length-sorted pools of conversations.
    (A pool should hold several batches' worth, or every batch pads to the pool's longest.)"""
    rng = random.Random(seed)
    it = iter(conversations)
    while True:
        encoded = [encode_for_training(stream, next(it), rng, max_len=max_len, cfg_dropout=cfg_dropout)
                   for _ in range(pool)]
        encoded.sort(key=lambda e: len(e.ids))
        groups, group = [], []
        for e in encoded:
            if group and (len(group) + 1) * len(e.ids) > batch_tokens:
                groups.append(group)
                group = []
            group.append(e)
        groups.append(group)
        rng.shuffle(groups)
        for g in groups:
            yield collate(g, stream.pad)
