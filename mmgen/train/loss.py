"""The training loss, computed only where it counts and only over the ids the stream allows.

Written by hand rather than taken from `LlamaForCausalLM(labels=…)` because on a 2-core CPU the
output layer and its softmax are ~15 % of a training step, and most of that is wasted:

- HF computes logits at every position; the loss needs them only where there is a label (the
  assistant's words and pictures — in an edit, the source picture and the request have none).
- The stream's grammar (sampling.Grammar) fixes the modality of every next token: inside a
  picture only image codes are allowed, outside it only words and specials. Sampling masks the
  other ids, so the distribution that is sampled is the softmax over the allowed slice alone.
  Training exactly that distribution (the softmax over [text | specials] or over [image codes],
  chosen by the label's kind) spends no capacity on learning what the grammar already enforces
  and halves the output layer's work.

Padding is on the right and attention is causal, so no attention mask is needed: a real token
only ever attends to earlier positions, all real. Leaving the mask out lets SDPA take its causal
kernel (~15 % faster attention on CPU than the same kernel with an explicit mask).

Words weigh more than codes (`text_weight`). A picture is 256 labels and its reply a handful, so
with every label weighted alike the assistant's words are ~5 % of the loss and an answer to a
question under 1 %: the gradient barely teaches the model to read what was asked (at 5,800 steps
it answered "name the shape of it" with an edit's reply). Weighting each word w times, normalised by
the weighted count, keeps the loss on the same scale; the reported per-modality losses stay plain
means. (Emu3 and Chameleon-style models likewise weigh the two modalities differently.)

`StreamLoss` wraps the language model so the loss runs inside `forward` (DDP syncs gradients
through the wrapper's forward under `accelerate launch`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data import IGNORE_INDEX


class StreamLoss(nn.Module):
    def __init__(self, lm: nn.Module, image_offset: int, teacher: nn.Module | None = None,
                 text_weight: float = 1.0):
        super().__init__()
        if text_weight <= 0:
            raise ValueError(f"text_weight must be positive, not {text_weight}")
        self.lm = lm
        self.image_offset = image_offset
        self.text_weight = float(text_weight)
        # the teacher is not a submodule: it is frozen and never saved with the student
        self.__dict__["teacher"] = teacher

    def weight(self, labels: torch.Tensor) -> float:
        """The weighted count of `labels` (each code 1, each word text_weight): what `forward`
        divides the weighted sum of the cross-entropies by."""
        y = labels[:, 1:][labels[:, 1:] != IGNORE_INDEX]
        images = int((y >= self.image_offset).sum())
        return images + self.text_weight * (y.numel() - images)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor, norm: float | None = None) -> dict:
        """→ {"loss": weighted mean over labelled positions, "image"/"text": (sum, count) of the CE}.

        `norm` replaces the divisor of the weighted sum (by default this batch's own weighted
        count): with several processes, each divides by the global batch's count over the number
        of processes, so the gradients DDP averages are those of the global batch's mean.
        With a teacher, the loss is the cross-entropy against the teacher's distribution over the
        same slice (KL(teacher ‖ student) plus a constant), reported per modality the same way."""
        target = labels[:, 1:]
        where = target != IGNORE_INDEX
        y = target[where]
        is_image = y >= self.image_offset
        hidden = _positions(self.lm, input_ids, where)
        teacher_hidden = None
        if self.teacher is not None:
            with torch.no_grad():
                teacher_hidden = _positions(self.teacher, input_ids, where)
        out, total, weights = {}, 0.0, 0.0
        for name, sel, lo, hi, w in (("image", is_image, self.image_offset, None, 1.0),
                                     ("text", ~is_image, 0, self.image_offset, self.text_weight)):
            logits = _slice_logits(self.lm, hidden[sel], lo, hi)
            if teacher_hidden is None:
                ce = F.cross_entropy(logits, y[sel] - lo, reduction="sum")
            else:
                p = torch.softmax(_slice_logits(self.teacher, teacher_hidden[sel], lo, hi), -1)
                ce = -(p * torch.log_softmax(logits, -1)).sum()
            out[name] = (ce.detach(), int(sel.sum()))
            total = total + w * ce
            weights += w * int(sel.sum())
        out["loss"] = total / (max(1.0, weights) if norm is None else norm)
        return out


def _positions(lm: nn.Module, input_ids: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Final hidden states at the positions that predict a label: [N, hidden]."""
    hidden = lm.get_decoder()(input_ids=input_ids).last_hidden_state
    return hidden[:, :-1][where]


def _slice_logits(lm: nn.Module, hidden: torch.Tensor, lo: int, hi: int | None) -> torch.Tensor:
    """Logits for ids [lo, hi) only, in fp32 for the softmax (the matmul runs under autocast)."""
    head = lm.get_output_embeddings()
    weight = head.weight[lo:hi]
    bias = head.bias[lo:hi] if getattr(head, "bias", None) is not None else None
    return F.linear(hidden, weight, bias).float()
