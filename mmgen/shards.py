"""Pre-encoded training data: conversations whose pictures are VQ codes already, in one folder.

    mmgen data encode --world 20000 --out shards/world-train       # world seeds 0 … 19999
    mmgen data encode --jsonl convs.jsonl --out shards/real        # `mmgen world export`'s format
    mmgen train lm --data shards/world-train

Rendering and VQ-encoding every picture costs far more than the rest of the data path, so a run
that sees each conversation more than once should pay it once: `write_shard` stores the codes,
`read_shard` yields the same `stream.Conversation`s back with no image work at all. A shard is a
folder, written atomically (built beside the target, then renamed into place):

    codes.safetensors     "codes": int16 [P, 256], every picture's codes in raster order
    conversations.jsonl   {"turns": [{"role": ..., "text": ..., "image": row of codes | null}]}
    meta.json             format, counts, codebook size, the VQ's fingerprint, the source, the
                          sha256 of both files (a damaged shard is refused, never half-read)

Codes only mean something to the VQ that made them, so a shard names that VQ's fingerprint
(`vq_fingerprint`) and `read_shard` refuses a shard made by another.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__
from .io import atomic_folder, read_json
from .stream import IMAGE_TOKENS, Conversation, Turn

FORMAT = "mmgen-shard-1"
CODES, CONVERSATIONS, META = "codes.safetensors", "conversations.jsonl", "meta.json"
MAX_CODEBOOK = 2 ** 15          # codes are stored as int16


class ShardError(ValueError):
    """A shard folder that is missing, damaged, of another format or made by another VQ."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def vq_fingerprint(vq_path: str | Path) -> str:
    """A short stable name for a VQ checkpoint's weights: the first 16 hex of model.safetensors' sha256."""
    return _sha256(Path(vq_path) / "model.safetensors")[:16]


def is_shard(path: str | Path) -> bool:
    return (Path(path) / META).is_file()


def _check_replaceable(path: Path) -> None:
    """A shard is written over an old shard or an empty folder, never over anything else."""
    if path.exists() and not is_shard(path) and (not path.is_dir() or any(path.iterdir())):
        raise ShardError(f"{path} exists and is not a shard: refusing to replace it")


def encode_command(source: dict | None, out: str | Path) -> str:
    """The `mmgen data encode` line that makes (or remakes) a shard of `source`."""
    source = source or {}
    if "world" in source:
        what = f"--world {source['world']} --split {source['split']} --start {source['start']}"
    elif "jsonl" in source:
        what = f"--jsonl {source['jsonl']}"
    else:
        what = "(--world N | --jsonl FILE)"
    return f"mmgen data encode {what} --vq VQ --out {out}"


# --- writing -------------------------------------------------------------------------------------
def write_shard(conversations: Iterable[Conversation], path: str | Path, *, codebook_size: int,
                vq_fingerprint: str, source: dict | None = None) -> dict:
    """Write `conversations` as a shard folder at `path` (replacing a shard already there); returns
    its meta. `source` records how it was made (e.g. {"world": 1000, "split": "train", "start": 0})."""
    path = Path(path)
    if not 0 < codebook_size <= MAX_CODEBOOK:
        raise ShardError(f"codebook size {codebook_size} does not fit a shard's int16 codes (at most {MAX_CODEBOOK})")
    _check_replaceable(path)
    with atomic_folder(path) as tmp:
        pictures: list[np.ndarray] = []
        n = 0
        with open(tmp / CONVERSATIONS, "w", encoding="utf-8") as f:
            for conv in conversations:
                turns = []
                for t in conv.turns:
                    image = None
                    if t.codes is not None:
                        image = len(pictures)
                        pictures.append(np.asarray(t.codes, dtype=np.int32))
                    turns.append({"role": t.role, "text": t.text, "image": image})
                f.write(json.dumps({"turns": turns}, ensure_ascii=False) + "\n")
                n += 1
        if n == 0:
            raise ShardError("no conversation to write")
        codes = np.stack(pictures) if pictures else np.zeros((0, IMAGE_TOKENS), dtype=np.int32)
        if codes.size and not (0 <= codes.min() and codes.max() < codebook_size):
            raise ShardError(f"image codes lie in [{codes.min()}, {codes.max()}], outside the codebook [0, {codebook_size})")
        save_file({"codes": torch.from_numpy(codes.astype(np.int16))}, str(tmp / CODES))
        meta = {"format": FORMAT, "conversations": n, "pictures": len(codes), "codebook_size": int(codebook_size),
                "vq_fingerprint": vq_fingerprint, "source": source or {},
                "mmgen": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "sha256": {name: _sha256(tmp / name) for name in (CODES, CONVERSATIONS)}}
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


# --- reading -------------------------------------------------------------------------------------
def read_shard(path: str | Path, *, repeat: bool = True, codebook_size: int | None = None,
               vq_fingerprint: str | None = None) -> Iterator[Conversation]:
    """The shard's conversations, in order, epoch after epoch with `repeat`.

    Everything is checked before the first conversation: the folder, the format, both files'
    checksums, and (when given) that the VQ being trained with is the one that encoded the shard."""
    path = Path(path)
    meta = _read_meta(path)
    ours = {"codebook_size": codebook_size, "vq_fingerprint": vq_fingerprint}
    differ = [k for k, v in ours.items() if v is not None and meta[k] != v]
    if differ:
        said = ", ".join(f"{k} {meta[k]} here, {ours[k]} in use" for k in differ)
        raise ShardError(f"this shard was encoded with a different image tokenizer ({path}: {said}): "
                         f"re-encode it with `{encode_command(meta.get('source'), path)}`")
    for name in (CODES, CONVERSATIONS):
        if not (path / name).is_file():
            raise ShardError(f"{path} is not a complete shard: {name} is missing")
        if _sha256(path / name) != meta["sha256"][name]:
            raise ShardError(f"{path / name} is damaged (its checksum differs from meta.json's): "
                             f"re-encode it with `{encode_command(meta.get('source'), path)}`")
    try:
        codes = load_file(str(path / CODES))["codes"]
    except (SafetensorError, KeyError, OSError) as e:
        raise ShardError(f"{path / CODES} cannot be read: {e}") from None
    if codes.dtype != torch.int16 or tuple(codes.shape) != (meta["pictures"], IMAGE_TOKENS):
        raise ShardError(f"{path / CODES} holds {codes.dtype} {tuple(codes.shape)}, "
                         f"not int16 ({meta['pictures']}, {IMAGE_TOKENS})")
    return _conversations(path, codes.numpy(), repeat)


def _read_meta(path: Path) -> dict:
    if not path.is_dir():
        raise ShardError(f"{path} is not a shard folder (make one with `mmgen data encode`)")
    try:
        meta = read_json(path / META)
    except FileNotFoundError:
        raise ShardError(f"{path} is not a shard: it has no {META} (make one with `mmgen data encode`)") from None
    except ValueError as e:
        raise ShardError(str(e)) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else None
        raise ShardError(f"{path} is in format {got!r}, not {FORMAT!r}: re-encode it with `mmgen data encode`")
    missing = {"conversations", "pictures", "codebook_size", "vq_fingerprint", "sha256"} - set(meta)
    if missing:
        raise ShardError(f"{path / META} lacks {', '.join(sorted(missing))}")
    return meta


def _conversations(path: Path, codes: np.ndarray, repeat: bool) -> Iterator[Conversation]:
    while True:
        with open(path / CONVERSATIONS, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                try:
                    turns = json.loads(line)["turns"]
                    yield Conversation(tuple(
                        Turn(role=t["role"], text=t["text"],
                             codes=None if t["image"] is None else codes[_row(t["image"], len(codes))])
                        for t in turns))
                except (ValueError, KeyError, TypeError, IndexError) as e:
                    raise ShardError(f"{path / CONVERSATIONS}:{lineno}: {e}") from None
        if not repeat:
            return


def _row(i, n: int) -> int:
    if not isinstance(i, int) or not 0 <= i < n:
        raise IndexError(f"picture {i!r} is not one of the shard's {n}")
    return i


# --- command line: mmgen data encode -------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .oneshot import one_line_errors
    one_line_errors(parser)
    parser.add_argument("--out", required=True, help="the shard folder to write (atomically)")
    parser.add_argument("--world", type=int, metavar="N", help="encode N world conversations")
    parser.add_argument("--split", choices=("train", "eval"), default="train", help="world split (default train)")
    parser.add_argument("--start", type=int, default=0, help="first world seed (default 0)")
    parser.add_argument("--jsonl", metavar="FILE", help="encode real conversations (`mmgen world export`'s format)")
    parser.add_argument("--vq", default="checkpoints/vq", help="image tokenizer checkpoint")
    parser.add_argument("--batch", type=int, default=64, help="world conversations rendered and encoded together")


def run(args: argparse.Namespace) -> int:
    def fail(message: str) -> int:
        print(f"mmgen data encode: {message}", file=sys.stderr)
        return 2

    from .world.scene import EVAL_SEED_OFFSET
    if (args.world is None) == (args.jsonl is None):
        return fail("give exactly one of --world N and --jsonl FILE")
    if args.world is not None and not (args.world >= 1 and 0 <= args.start and args.start + args.world <= EVAL_SEED_OFFSET):
        return fail(f"--world needs N ≥ 1 and seeds --start … --start + N - 1 within [0, {EVAL_SEED_OFFSET})")
    if args.batch < 1:
        return fail("--batch must be at least 1")
    if args.jsonl is not None and not Path(args.jsonl).is_file():
        return fail(f"{args.jsonl} is not a file")
    if not (Path(args.vq) / "model.safetensors").is_file():
        return fail(f"{args.vq} is not an image tokenizer checkpoint (no model.safetensors)")
    out = Path(args.out)
    try:
        _check_replaceable(out)                # before the VQ loads
    except ShardError as e:
        return fail(str(e))

    from tqdm import tqdm

    from .data import CodeCache, jsonl_conversations, world_conversations
    from .vq import VQTokenizer
    from .world.export import DatasetError
    vq = VQTokenizer.from_pretrained(args.vq, device="cuda" if torch.cuda.is_available() else "cpu")
    if args.world is not None:
        source = {"world": args.world, "split": args.split, "start": args.start}
        total = args.world
        convs = islice(world_conversations(CodeCache(vq.encode), split=args.split, start=args.start,
                                           chunk=min(args.batch, args.world)), args.world)
    else:
        source = {"jsonl": str(args.jsonl)}
        with open(args.jsonl, encoding="utf-8", errors="replace") as f:
            total = sum(1 for line in f if line.strip())
        convs = jsonl_conversations(args.jsonl, vq.encode, repeat=False)
    # leave=False: the bar clears itself, and the summary (or the error) is the line that stays
    bar = tqdm(convs, total=total, unit="conv", desc="encode", dynamic_ncols=True, leave=False,
               mininterval=1.0 if sys.stderr.isatty() else 15.0)
    t0 = time.perf_counter()
    try:
        meta = write_shard(bar, out, codebook_size=vq.codebook_size, vq_fingerprint=vq_fingerprint(args.vq),
                           source=source)
    except (ShardError, DatasetError) as e:
        return fail(str(e))
    finally:
        bar.close()
    dt = time.perf_counter() - t0
    print(f"wrote {meta['conversations']} conversations and {meta['pictures']} pictures to {out} "
          f"in {dt:.1f} s ({meta['conversations'] / dt:.0f} conversations/s; VQ {meta['vq_fingerprint']})")
    return 0
