"""Decoders that generate_ids can draw with in tests and benchmarks, never in the product.

    generate_ids(..., backend="nocache")     # transformers' forward over the whole sequence every step
    generate_ids(..., backend="hf")          # transformers' forward with its DynamicCache
    generate_ids(..., backend="recompute")   # our engine, rerun over the whole sequence every step

"nocache" is the reference the tests hold the engine to (the same tokens); "hf" and "recompute"
are what benchmarks/generate.py times the engine's static cache against. They implement the
calls the word and picture phases make of a decoder (generate.EngineDecoder): start, feed,
branch and close; speculative decoding (step, rollback) needs the engine.
"""
from __future__ import annotations

import torch
from transformers import DynamicCache

from .generate import engine_for, left_pad, model_device

class ReferenceDecoder:
    """One of the test backends ("hf", "nocache", "recompute": generate.BACKENDS checks the name)."""

    def __init__(self, model, backend: str, rows: int):
        self.model, self.backend, self.rows = model, backend, rows
        self.engine = engine_for(model, rows) if backend == "recompute" else None
        self.device = model_device(model)

    def start(self, ids: torch.Tensor, mask: torch.Tensor, vocab: tuple[int, int] | None = None) -> torch.Tensor:
        """Prefill left-padded prompts ids [R, L]; the last logits [R, V] (`vocab` is the engine's hint)."""
        self.ids, self.mask = ids.to(self.device), mask.to(self.device)
        self.positions = (self.mask.cumsum(-1) - 1).clamp(min=0)
        if self.engine is not None:
            return self.engine.prefill(self.ids, pad=(1 - self.mask).sum(-1), vocab=vocab)
        self.cache = DynamicCache() if self.backend == "hf" else None
        return self.model(input_ids=self.ids, attention_mask=self.mask, position_ids=self.positions,
                          past_key_values=self.cache, use_cache=self.cache is not None).logits[:, -1]

    def feed(self, tokens: torch.Tensor, vocab: tuple[int, int] | None = None) -> torch.Tensor:
        """Append one token per row [R]; the next logits [R, V]."""
        new = tokens.to(self.device)[:, None]
        self.mask = torch.cat([self.mask, torch.ones_like(new)], dim=1)
        self.positions = torch.cat([self.positions, self.positions[:, -1:] + 1], dim=1)
        self.ids = torch.cat([self.ids, new], dim=1)
        if self.engine is not None:                  # no cache kept: every position again
            return self.engine.prefill(self.ids, pad=(1 - self.mask).sum(-1), vocab=vocab)
        if self.backend == "hf":
            # embedded with the ids before it: an image code's embedding depends on its place in
            # the picture (model.StreamEmbedding)
            embeds = self.model.get_input_embeddings()(self.ids)[:, -1:]
            return self.model(inputs_embeds=embeds, attention_mask=self.mask, position_ids=self.positions[:, -1:],
                              past_key_values=self.cache, use_cache=True).logits[:, -1]
        return self.model(input_ids=self.ids, attention_mask=self.mask, position_ids=self.positions,
                          use_cache=False).logits[:, -1]

    def branch(self, held: list[int], copies: int, twin: list[int] | None, filler: int) -> "ReferenceDecoder":
        """The picture rows, prefilled afresh: `held` × copies, then `twin` × copies."""
        rows = [held] * copies + ([twin] * copies if twin is not None else [])
        other = ReferenceDecoder(self.model, self.backend, len(rows))
        other.start(*left_pad(rows, filler)[:2])
        return other

    def close(self) -> None:
        """Nothing to give back."""
