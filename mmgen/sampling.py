"""Logits → next token: the stream's grammar, classifier-free guidance, temperature, top-k, top-p.

The grammar is enforced here, at every step, so a bad sample can never break a picture:
inside <image> … </image> only image codes are legal and exactly 256 of them come; outside,
no image code is. The engine (generate.py) knows only ids and asks `Grammar` which are legal.
The knobs (cfg, temperature, word_temperature, top_k, top_p, max_words, picture) come in a
`SamplingConfig`, the sampler's view of the session's Settings (settings.py).
"""
from __future__ import annotations

import torch

from .settings import SamplingConfig
from .stream import IMAGE_TOKENS, Stream

NEG_INF = float("-inf")


class Grammar:
    """Which ids may come next in an assistant turn, given what it has written so far.

    States: writing words (any text id, <image> if pictures are allowed, <eot>); inside a
    picture with n < 256 codes (image codes only); 256 codes written (</image> only); picture
    closed (<eot> only); finished. `picture` is the setting: "auto" (the model decides), "always"
    (no <eot> before a picture) or "never" (no <image>).
    """

    def __init__(self, stream: Stream, *, picture: str = SamplingConfig.picture):
        self.stream = stream
        self.allow_image = picture != "never"
        self.require_image = picture == "always"
        self.codes = -1            # -1: not in a picture; 0..256: codes written so far
        self.image_done = False
        self.text_tokens = 0
        self.finished = False
        v = stream.vocab_size
        self._text_mask = torch.zeros(v, dtype=torch.bool)
        self._text_mask[:stream.text_vocab] = True
        self._image_mask = torch.zeros(v, dtype=torch.bool)
        self._image_mask[stream.image_offset:] = True

    @property
    def in_image(self) -> bool:
        return 0 <= self.codes < IMAGE_TOKENS

    def next_ids(self) -> tuple[int, int]:
        """A range (lo, hi) holding every id that may come next: the codes inside a picture, else
        the text ids and the special tokens (the decoding engine computes only those logits)."""
        if self.in_image:
            return self.stream.image_offset, self.stream.vocab_size
        return 0, self.stream.image_offset

    def allowed(self, max_words: int) -> torch.Tensor:
        """Boolean mask over the vocabulary of ids that may come next (words only up to `max_words`)."""
        s = self.stream
        mask = torch.zeros(s.vocab_size, dtype=torch.bool)
        if self.finished:
            mask[s.eot] = True
        elif self.in_image:
            mask |= self._image_mask
        elif self.codes == IMAGE_TOKENS:
            mask[s.image_end] = True
        elif self.image_done:
            mask[s.eot] = True
        else:
            if self.text_tokens < max_words:
                mask |= self._text_mask
            if self.allow_image:
                mask[s.image_start] = True
            if not self.require_image:
                mask[s.eot] = True
        return mask

    def folded_picture(self) -> tuple[int, int] | None:
        """(<image>, <eot>) where the chance of opening a picture that may not come should go to
        ending the reply, else None. With pictures off (picture "never": `ask`), a reply the model
        means as the lead-in to a picture ("Done — the cross is blue now.") stops where the picture
        would start; masking <image> alone made it write on to the length cap ("Done — the cross is
        blue now.Done — the cross is blue now.…", seen in the benchmark's questions). Not before the
        first word: that would be an empty reply."""
        if self.allow_image or self.text_tokens == 0:       # (with pictures off none opens or closes)
            return None
        return self.stream.image_start, self.stream.eot

    def advance(self, token: int) -> None:
        s = self.stream
        if self.finished:
            raise ValueError("the turn is already finished")
        if token == s.eot:
            self.finished = True
        elif token == s.image_start:
            self.codes = 0
        elif token == s.image_end:
            self.codes, self.image_done = -1, True
        elif s.is_image_id(token):
            self.codes += 1
        else:
            self.text_tokens += 1


def guide(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022) in logit space: u + s·(c − u).

    Per-row constants cancel in the softmax, so this equals guiding log-probabilities.
    """
    if scale == 1.0:
        return cond
    return uncond + scale * (cond - uncond)


def logits_to_probs(logits: torch.Tensor, *, temperature: float, top_k: int | None = None,
                    top_p: float | None = None) -> torch.Tensor:
    """Probabilities after temperature, top-k and top-p. `logits` [..., V], -inf where illegal."""
    logits = logits.float() / max(temperature, 1e-5)
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, NEG_INF)
    probs = torch.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1.0:
        sorted_p, order = torch.sort(probs, dim=-1, descending=True)
        # drop an id when the mass strictly before it already reaches top_p (the first always stays)
        drop_sorted = (torch.cumsum(sorted_p, dim=-1) - sorted_p) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def sample(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One draw per row of `probs` [B, V] → [B]."""
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def next_token_probs(cond: torch.Tensor, uncond: torch.Tensor | None, allowed: torch.Tensor,
                     config: SamplingConfig, *, in_image: bool, fold: tuple[int, int] | None = None) -> torch.Tensor:
    """The distribution of the next id [B, V]: guided inside pictures, plain for words.

    `fold` (src, dst): src's probability is added to dst's before the mask (Grammar.folded_picture).
    Greedy (temperature 0) returns a one-hot distribution.
    """
    if in_image and uncond is not None:
        logits = guide(cond.float(), uncond.float(), config.cfg)
        temperature = config.temperature
    else:
        logits = cond.float()
        temperature = config.temperature if in_image else config.word_temperature
    if fold is not None:       # p(dst) + p(src), in logits: log(e^a + e^b)
        src, dst = fold
        logits = logits.clone()
        logits[:, dst] = torch.logaddexp(logits[:, dst], logits[:, src])
    logits = logits.masked_fill(~allowed.to(logits.device), NEG_INF)
    if temperature <= 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    top_k = config.top_k if in_image else None
    top_p = config.top_p if in_image else None
    return logits_to_probs(logits, temperature=temperature, top_k=top_k, top_p=top_p)
