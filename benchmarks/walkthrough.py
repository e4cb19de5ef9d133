"""The conversations a new user tried that went wrong (issue 26's "Why"), yes/no questions about
what is not in the picture, a relation said as "beside", and small talk, run again on a checkpoint.

    python benchmarks/walkthrough.py [--checkpoints checkpoints] [--out runs/walkthrough] [--seed 0]

Each conversation is sent turn by turn; every reply's words and the judge's reading of its picture
are printed (and written to transcript.md), and the pictures go on one contact sheet per
conversation (sheet-NN.png, a row of the pictures in order, the user's own picture first when
there is one). Nothing is graded here: this is for looking at — `mmgen eval` grades.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from mmgen.eval.judge import judge
from mmgen.pipeline import load
from mmgen.world import render
from mmgen.world.scene import Obj, Scene, Sign, place

CONVERSATIONS = [
    ["draw a blue square", "make it bigger"],
    ["a red circle on the left", "add two red circles"],
    ["three green triangles", "remove one of them"],
    ["three yellow squares", "make them red"],
    ["a large orange square", "make it smaller"],
    ["a blue circle", "make the circle green", "what colour is the circle?"],
    ["three blue squares", "how many squares are there?"],
    ["three purple diamonds", "how many diamonds are there?"],
    ["a green star next to an orange triangle"],
    ['a sign that says "OPEN"', "what does the sign say?"],
    ['a white sign with the word "HELLO" in red', 'change the word to "SALE"', "what word is written?"],
    ["three red squares", "could you clear away all the squares?"],
    ["two yellow triangles and an orange diamond", "get rid of both triangles"],
    ["a blue circle and a green square", "is the circle red?", "is there a star?", "is the square green?"],
]
# run after the user's pictures, so the conversations above keep their seeds
LATER_CONVERSATIONS = [
    ["two yellow triangles and an orange diamond", "where are the triangles?"],
    ["a red circle beside a blue square"],
    ["hello", "hi! can you draw a purple star?", "wow, lovely", "make it green", "thanks, bye"],
]
USER_PICTURE_QUESTION = "how many circles are in this picture?"
USER_SIGN_QUESTION = "what does the sign say?"


def two_circles() -> Image.Image:
    import random
    scene = Scene(objects=(Obj("circle", "red", "medium", "top left"), Obj("circle", "blue", "medium", "bottom right")))
    return render(place(scene, random.Random(0)))


def a_sign() -> Image.Image:
    """A user's picture of a sign reading ZEBRA (a word no prompt above uses), in colours the world
    letters in (scene.LEGIBLE_PAIRS: black on a yellow plaque). Blue on yellow, which it used before,
    is not one of them: the tokenizer has no glyph codes for it, and the transformer answered nothing."""
    return render(Scene(background="cream", sign=Sign("ZEBRA", "black", "yellow", "middle")))


def reading(image) -> str:
    if image is None:
        return "(no picture)"
    found = judge(image)
    things = [f"{o['size']} {o['color']} {o['shape']} {o['cell']}" for o in found["objects"]]
    if found["sign"]:
        things.append(f"sign {found['sign']['word']!r}")
    return f"{', '.join(things) or 'nothing'} on {found['background']}"


def sheet(images: list[Image.Image], scale: int = 2) -> Image.Image:
    side = 128 * scale
    out = Image.new("RGB", (max(1, len(images)) * (side + 8), side), "white")
    for i, im in enumerate(images):
        out.paste(im.convert("RGB").resize((side, side), Image.NEAREST), (i * (side + 8), 0))
    return out


def run_conversation(model, turns: list[str], seed: int, first_image=None) -> tuple[list[str], list]:
    chat = model.chat(seed=seed, refine=False)
    lines, images = [], [first_image] if first_image is not None else []
    for k, text in enumerate(turns):
        reply = chat.send(text, image=first_image if k == 0 else None)
        lines += [f"> {text}", f"{reply.text}", f"   judge: {reading(reply.image)}" if reply.image else ""]
        if reply.image is not None:
            images.append(reply.image)
    return [x for x in lines if x], images


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", default=None)
    ap.add_argument("--out", default="runs/walkthrough")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    model = load(args.checkpoints)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    transcript = []
    runs = [(turns, None) for turns in CONVERSATIONS] + [([USER_PICTURE_QUESTION], two_circles()),
                                                         ([USER_SIGN_QUESTION], a_sign())] + \
        [(turns, None) for turns in LATER_CONVERSATIONS]
    for i, (turns, picture) in enumerate(runs):
        lines, images = run_conversation(model, turns, args.seed + i, picture)
        if images:
            sheet(images).save(out / f"sheet-{i:02d}.png")
        transcript += [f"## {i:02d}", *lines, ""]
        print("\n".join(transcript[-len(lines) - 2:]))
    (out / "transcript.md").write_text("\n".join(transcript) + "\n")
    print(f"wrote {out}/transcript.md and the sheets")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
