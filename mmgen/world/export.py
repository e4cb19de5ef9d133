"""Export conversations as JSONL + PNG, and read that format back (also used for real data).

    mmgen world export --n 200 --out samples/ [--split train|eval] [--seed 0]

writes `samples/conversations.jsonl` and `samples/images/*.png`. One JSON object per line:

    {"id": "train-0",
     "messages": [{"role": "user" | "assistant", "text": str,
                   "image": "images/train-0-1.png" | null,      # relative to the JSONL's folder
                   "scene": {...} | null,                        # ground truth, Scene.to_json_dict()
                   "task": "create" | "edit" | "ask" | "variation" | "chat" | null,
                   "meta": {...} | null}]}                       # spec / edit record / answer

Trainers read real image–text conversations in the same format, where "scene", "task" and
"meta" are simply absent:

    for ex in iter_jsonl("samples/conversations.jsonl"):
        ex.id, [(m.role, m.text, m.image, m.scene) for m in ex.messages]   # image: PIL.Image | None
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..io import atomic_write, atomic_write_bytes
from .conversation import Conversation, sample_conversation
from .render import render
from .scene import InvalidScene, Scene, validate

JSONL_NAME = "conversations.jsonl"
IMAGE_DIR = "images"
ROLES = ("user", "assistant")


class DatasetError(ValueError):
    """A malformed line or a missing image in a conversations JSONL file."""


@dataclass
class Message:
    role: str
    text: str
    image: Image.Image | None = None
    scene: Scene | None = None           # ground truth when the picture comes from the world
    task: str | None = None
    meta: dict | None = None


@dataclass
class Example:
    id: str
    messages: list[Message]


# --- writing -------------------------------------------------------------------------------------
def conversation_record(conv: Conversation, out: Path) -> dict:
    """The JSON object of one conversation; renders and writes its pictures under `out/images/`."""
    messages = []
    for k, turn in enumerate(conv.turns):
        image = None
        if turn.image is not None:
            image = f"{IMAGE_DIR}/{conv.id}-{k}.png"
            picture = render(turn.image)
            atomic_write(out / image, lambda tmp: picture.save(tmp, format="PNG"))
        messages.append({"role": turn.role, "text": turn.text, "image": image,
                         "scene": None if turn.image is None else turn.image.to_json_dict(),
                         "task": turn.task, "meta": turn.meta or None})
    return {"id": conv.id, "messages": messages}


def export(out: str | Path, n: int, split: str = "train", seed: int = 0) -> tuple[Path, int]:
    """Write conversations `seed` … `seed + n - 1` of `split`; returns the JSONL's path and the
    number of pictures written.

    The JSONL is written last and atomically, so it never names a picture that isn't there.
    """
    out = Path(out)
    (out / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    records = [conversation_record(sample_conversation(seed + i, split), out) for i in range(n)]
    path = out / JSONL_NAME
    text = "".join(json.dumps(r) + "\n" for r in records)
    atomic_write_bytes(path, text.encode("utf-8"))
    return path, sum(m["image"] is not None for r in records for m in r["messages"])


# --- reading -------------------------------------------------------------------------------------
def _message(m, root: Path, where: str) -> Message:
    if not isinstance(m, dict):
        raise DatasetError(f"{where}: a message must be an object, got {type(m).__name__}")
    role, text = m.get("role"), m.get("text")
    if role not in ROLES:
        raise DatasetError(f"{where}: role must be one of {ROLES}, got {role!r}")
    if not isinstance(text, str):
        raise DatasetError(f"{where}: text must be a string")
    image = None
    if m.get("image") is not None:
        if not isinstance(m["image"], str):
            raise DatasetError(f"{where}: image must be a path string or null")
        p = root / m["image"]
        if not p.is_file():
            raise DatasetError(f"{where}: image {m['image']!r} not found at {p}")
        try:
            with Image.open(p) as im:
                image = im.convert("RGB")
        except OSError as e:
            raise DatasetError(f"{where}: cannot read image {p}: {e}") from None
    scene = None
    if m.get("scene") is not None:
        try:
            scene = Scene.from_dict(m["scene"])
            validate(scene)
        except (KeyError, TypeError, ValueError, AttributeError) as e:   # InvalidScene is a ValueError
            kind = "invalid" if isinstance(e, InvalidScene) else "malformed"
            raise DatasetError(f"{where}: {kind} scene: {e}") from None
    return Message(role=role, text=text, image=image, scene=scene, task=m.get("task"), meta=m.get("meta"))


def iter_jsonl(path: str | Path) -> Iterator[Example]:
    """Examples one by one; image paths are relative to the JSONL's folder (or absolute)."""
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetError(f"{where}: not JSON ({e})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
                raise DatasetError(f"{where}: expected an object with a string 'id'")
            msgs = obj.get("messages")
            if not isinstance(msgs, list) or not msgs:
                raise DatasetError(f"{where}: 'messages' must be a non-empty list")
            yield Example(id=obj["id"], messages=[_message(m, path.parent, f"{where}: message {k}")
                                                  for k, m in enumerate(msgs)])


def read_jsonl(path: str | Path) -> list[Example]:
    return list(iter_jsonl(path))


# --- command line --------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..oneshot import one_line_errors
    one_line_errors(parser)
    parser.add_argument("--n", type=int, default=20, help="number of conversations (default 20)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--split", choices=("train", "eval"), default="train")
    parser.add_argument("--seed", type=int, default=0, help="first conversation seed (default 0)")


def run(args: argparse.Namespace) -> int:
    if args.n < 1:
        print("--n must be at least 1", file=sys.stderr)
        return 2
    try:
        path, images = export(args.out, args.n, split=args.split, seed=args.seed)
    except ValueError as e:                     # a seed outside the split's range
        print(f"mmgen world export: {e}", file=sys.stderr)
        return 2
    except OSError as e:                        # --out under a file, or where we may not write
        print(f"mmgen world export: cannot write {args.out}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"wrote {args.n} {args.split} conversations to {path} ({images} pictures in {path.parent / IMAGE_DIR})")
    return 0
