"""Decoding: prefill the prompt, then one KV-cached step per token, CFG as one batch.

The engine knows only ids. Rows of the batch are [cond × n, uncond × n]: n pictures for one
prompt, each with its unconditional twin (the same conversation with the last user message's
words emptied). Both halves read the same sampled token, so one KV cache serves them all.
Prompts of different lengths are left-padded; positions count only real tokens.

    for step in generate_ids(model, stream, cond_ids, uncond_ids, config=SamplingConfig(), seed=0):
        step.tokens   # the n ids just chosen, one per picture

Backends: "engine" (default: our lean static-cache engine, engine.py), "hf" (transformers'
forward with its DynamicCache) and "nocache" (recompute everything each step; for tests and
for the benchmark's cache-vs-no-cache ratio). All three give the same tokens.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from transformers import DynamicCache

from .engine import Engine
from .sampling import Grammar, SamplingConfig, next_token_probs, sample
from .stream import Stream

BACKENDS = ("engine", "hf", "nocache")


@dataclass
class Step:
    tokens: list[int]          # one id per picture row
    in_image: list[bool]       # whether each row was inside a picture when this id was chosen
    finished: list[bool]       # whether each row's turn is over after this id


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ids [B, L], attention mask [B, L], position ids [B, L] for left-padded rows."""
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, length - len(r):] = torch.tensor(list(r), dtype=torch.long)
        mask[i, length - len(r):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, positions


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def engine_for(model, batch: int) -> Engine:
    """One engine per (model, batch size), kept on the model: its fused weights are built once.

    The engine holds copies of fused weights, so build a new one after changing the weights.
    """
    engines = model.__dict__.setdefault("_mmgen_engines", {})
    if batch not in engines:
        engines[batch] = Engine(model, batch=batch)
    return engines[batch]


class Decoder:
    """The model behind one of the backends: `start(ids, mask)` then `feed(tokens)`, both → last logits."""

    def __init__(self, model, backend: str, batch: int):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
        self.model, self.backend = model, backend
        self.engine = engine_for(model, batch) if backend == "engine" else None
        self.device = model_device(model)

    def start(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.ids, self.mask = ids.to(self.device), mask.to(self.device)
        self.positions = (self.mask.cumsum(-1) - 1).clamp(min=0)
        if self.engine is not None:
            return self.engine.prefill(self.ids, pad=(1 - self.mask).sum(-1))
        self.cache = DynamicCache() if self.backend == "hf" else None
        return self.model(input_ids=self.ids, attention_mask=self.mask, position_ids=self.positions,
                          past_key_values=self.cache, use_cache=self.cache is not None).logits[:, -1]

    def feed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append one token per row [B] and return the next logits [B, V]."""
        new = tokens.to(self.device)[:, None]
        if self.engine is not None:
            return self.engine.step(new)[:, -1]
        self.mask = torch.cat([self.mask, torch.ones_like(new)], dim=1)
        self.positions = torch.cat([self.positions, self.positions[:, -1:] + 1], dim=1)
        if self.backend == "hf":
            return self.model(input_ids=new, attention_mask=self.mask, position_ids=self.positions[:, -1:],
                              past_key_values=self.cache, use_cache=True).logits[:, -1]
        self.ids = torch.cat([self.ids, new], dim=1)
        return self.model(input_ids=self.ids, attention_mask=self.mask, position_ids=self.positions,
                          use_cache=False).logits[:, -1]


def generate_ids(model, stream: Stream, cond_ids: Sequence[int], uncond_ids: Sequence[int] | None = None, *,
                 config: SamplingConfig | None = None, n: int = 1, seed: int | None = None,
                 allow_image: bool = True, require_image: bool = False, backend: str = "engine",
                 max_steps: int | None = None) -> Iterator[Step]:
    """Yield one `Step` per generated position until every row's assistant turn ends (<eot>)."""
    config = config or SamplingConfig()
    guided = uncond_ids is not None and config.cfg != 1.0
    rows = [list(cond_ids)] * n + ([list(uncond_ids)] * n if guided else [])
    ids, mask, _ = left_pad(rows, stream.pad)
    grammars = [Grammar(stream, allow_image=allow_image, require_image=require_image) for _ in range(n)]
    generator = torch.Generator().manual_seed(seed if seed is not None else torch.seed() % 2**63)
    limit = max_steps or (config.max_text_tokens + 256 + 3)
    decoder = Decoder(model, backend, len(rows))

    with torch.inference_mode():
        logits = decoder.start(ids, mask)
        for _ in range(limit):
            tokens, in_image = [], []
            for r, g in enumerate(grammars):
                if g.finished:              # this row's turn is over; it idles on <eot> while others finish
                    tokens.append(stream.eot)
                    in_image.append(False)
                    continue
                inside = g.in_image
                allowed = g.allowed(config.max_text_tokens)
                probs = next_token_probs(logits[r:r + 1], logits[n + r:n + r + 1] if guided else None,
                                         allowed, config, in_image=inside)
                t = int(sample(probs.cpu(), generator)[0])
                g.advance(t)
                tokens.append(t)
                in_image.append(inside)
            yield Step(tokens=tokens, in_image=in_image, finished=[g.finished for g in grammars])
            if all(g.finished for g in grammars):
                return
            logits = decoder.feed(torch.tensor(tokens * (2 if guided else 1), dtype=torch.long))
