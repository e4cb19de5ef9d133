"""Pieces the transformer trainers share: precision choice, validation loss, checkpoints."""
from __future__ import annotations

from pathlib import Path

import torch

from ..data import collate
from ..hardware import bf16_native
from ..io import atomic_folder
from ..unknown_words import write_vocabulary
from ..stream import Stream


def autocast_dtype() -> str:
    """accelerate's mixed_precision: bf16 on CUDA that supports it and on CPUs with AMX/AVX512-BF16."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if bf16_native(device):
        return "bf16"
    return "fp16" if device == "cuda" else "no"


@torch.no_grad()
def validation_loss(loss_model, stream: Stream, conversations, device, *, bf16: bool, batch_size: int = 8) -> dict:
    """Mean next-token loss on the assistant's words and on its picture codes, separately, under
    bf16 autocast when `bf16` (as training runs).

    `loss_model` is a `train.loss.StreamLoss`, so this is the very quantity training lowers."""
    was_training = loss_model.training
    loss_model.eval()
    sums = {"text": 0.0, "image": 0.0}
    counts = {"text": 0, "image": 0}
    encoded = [stream.encode(c) for c in conversations]
    for i in range(0, len(encoded), batch_size):
        batch = collate(encoded[i:i + batch_size], stream.pad).to(device)
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16,
                            enabled=bf16):
            out = loss_model(batch.input_ids, batch.labels)
        for k in sums:
            sums[k] += float(out[k][0])
            counts[k] += out[k][1]
    loss_model.train(was_training)
    return {k: round(sums[k] / max(1, counts[k]), 5) for k in sums}


def save_lm_checkpoint(model, text_tokenizer, out: str | Path, progress: dict, vocabulary=None) -> None:
    """config.json + model.safetensors (bf16) + tokenizer.json, and the words its training messages
    use when given (vocabulary.json, unknown_words.py), swapped into place in one rename."""
    model.config.mmgen_training = dict(progress)
    # ship bf16 weights; the model keeps training in fp32
    bf16 = {k: v.detach().to(torch.bfloat16) for k, v in model.state_dict().items()}
    with atomic_folder(out) as tmp:
        model.save_pretrained(tmp, state_dict=bf16, safe_serialization=True)
        text_tokenizer.save_pretrained(tmp)
        if vocabulary is not None:
            write_vocabulary(tmp, vocabulary)
