"""The chat terminal's parts: picture encoders (exact half-block codes, kitty/iTerm2/sixel framing),
terminal detection, in-place redraw, slash-command and /set parsing, and the Terminal itself on
a tiny random model (commands, bad input, Ctrl-C, piped output without escape codes)."""
from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmgen.inputs import SessionError, check_text
from mmgen.session import Settings
from mmgen.termimage import (KITTY_CHUNK, RESET, UPPER_HALF, Canvas, _sixel_runs, detect, halfblocks, iterm, kitty,
                             kitty_delete, sixel)
from mmgen.oneshot import BadInput
from mmgen.terminal import (CommandError, Terminal, WordWrap, add_arguments, history_file, parse_command, parse_path,
                            parse_settings, parse_value, picture_name)

REPO = Path(__file__).resolve().parent.parent
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # like conftest's tiny models: two threads fighting over two busy cores are many times slower
    import torch
    torch.set_num_threads(1)


def check_text_error(text: str) -> SessionError:
    """The sentence the session refuses `text` with."""
    with pytest.raises(SessionError) as e:
        check_text(text, "the message")
    return e.value


def image_of(rows: list[list[tuple]]) -> Image.Image:
    return Image.fromarray(np.array(rows, dtype=np.uint8), "RGB")


def noise(size: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB")


# --- encoders ------------------------------------------------------------------------------------
def test_halfblocks_exact_codes():
    # upper pixel -> foreground, lower pixel -> background, one ▀ per column, reset at the end
    img = image_of([[RED, GREEN], [BLUE, WHITE]])
    assert halfblocks(img, cols=2) == [
        "\x1b[38;2;255;0;0m\x1b[48;2;0;0;255m\u2580\x1b[38;2;0;255;0m\x1b[48;2;255;255;255m\u2580\x1b[0m"]
    # colours are written only when they change along a line; each line starts afresh
    img = image_of([[RED, RED, RED], [BLUE, BLUE, WHITE], [GREEN, GREEN, GREEN], [GREEN, GREEN, GREEN]])
    assert halfblocks(img, cols=3) == [
        "\x1b[38;2;255;0;0m\x1b[48;2;0;0;255m\u2580\u2580\x1b[48;2;255;255;255m\u2580\x1b[0m",
        "\x1b[38;2;0;255;0m\x1b[48;2;0;255;0m\u2580\u2580\u2580\x1b[0m"]


def test_halfblocks_scale_and_transparency():
    lines = halfblocks(noise(128), cols=64)
    assert len(lines) == 32 and all(line.count(UPPER_HALF) == 64 and line.endswith(RESET) for line in lines)
    clear = Image.new("RGBA", (8, 8), (255, 0, 0, 0))          # fully transparent: the checkerboard shows
    first = halfblocks(clear, cols=8)[0]
    assert first.startswith("\x1b[38;2;204;204;204m\x1b[48;2;204;204;204m") and "255;0;0" not in first


def kitty_chunks(text: str) -> list[tuple[dict, str]]:
    found = re.findall(r"\x1b_G([^;]*);([^\x1b]*)\x1b\\", text)
    assert "".join(f"\x1b_G{k};{p}\x1b\\" for k, p in found) == text       # nothing else in between
    return [(dict(kv.split("=") for kv in keys.split(",")), payload) for keys, payload in found]


def test_kitty_framing():
    img = noise(64)                                          # noise: the PNG spans several chunks
    chunks = kitty_chunks(kitty(img, lines=16, image_id=7))
    assert len(chunks) > 2
    first = chunks[0][0]
    assert first == {"a": "T", "f": "100", "i": "7", "r": "16", "C": "1", "q": "2", "m": "1"}
    assert [keys for keys, _ in chunks[1:]] == [{"m": "1"}] * (len(chunks) - 2) + [{"m": "0"}]
    assert all(len(p) <= KITTY_CHUNK for _, p in chunks) and all(len(p) % 4 == 0 for _, p in chunks[:-1])
    png = base64.standard_b64decode("".join(p for _, p in chunks))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), np.asarray(img))
    small = kitty_chunks(kitty(image_of([[RED]]), lines=1))
    assert len(small) == 1 and small[0][0]["m"] == "0"
    assert kitty_delete(7) == "\x1b_Ga=d,d=I,i=7,q=2\x1b\\"


def test_iterm_framing():
    img = noise(32)
    m = re.fullmatch(r"\x1b\]1337;File=inline=1;size=(\d+);height=(\d+);preserveAspectRatio=1:([A-Za-z0-9+/=]+)\x07",
                     iterm(img, lines=12))
    assert m and m.group(2) == "12"
    png = base64.standard_b64decode(m.group(3))
    assert int(m.group(1)) == len(png)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), np.asarray(img))


def test_sixel_encoding():
    assert _sixel_runs("@@@@@?~~~") == "!5@?~~~"
    out = sixel(image_of([[RED, BLUE]]), size=(2, 1))
    assert out.startswith('\x1bP0;1;0q"1;1;2;1') and out.endswith("-\x1b\\")
    palette = dict((rgb, i) for i, rgb in re.findall(r"#(\d+);2;(\d+;\d+;\d+)", out))
    red, blue = palette["100;0;0"], palette["0;0;100"]
    # one band: red fills bit 0 of column 0 ('@' = 63 + 1), blue bit 0 of column 1; '$' between passes
    passes = re.sub(r"#\d+;2;\d+;\d+;\d+", "", out.split('"1;1;2;1')[1])      # the palette taken out
    first, second = sorted([(int(red), "@?"), (int(blue), "?@")])                        # passes go by colour index
    assert passes == f"#{first[0]}{first[1]}$#{second[0]}{second[1]}-\x1b\\"
    tall = sixel(noise(16), size=(16, 16))
    assert tall.count("-") == 3                               # 16 rows = three bands of six


@pytest.mark.skipif(shutil.which("sixel2png") is None, reason="libsixel's sixel2png is not installed")
def test_sixel_reads_back_with_libsixel(tmp_path):
    """An independent decoder (libsixel) reads our sixel back as the picture, up to the palette."""
    img = Image.fromarray(np.kron(np.random.default_rng(1).integers(0, 256, (8, 8, 3)), np.ones((4, 4, 1)))
                          .astype(np.uint8), "RGB")            # 32 × 32, 64 flat squares: every colour fits
    (tmp_path / "in.six").write_text(sixel(img, size=(32, 32)))
    subprocess.run(["sixel2png", "-i", str(tmp_path / "in.six"), "-o", str(tmp_path / "out.png")], check=True)
    back = np.asarray(Image.open(tmp_path / "out.png").convert("RGB")).astype(int)
    assert back.shape == (32, 32, 3) and np.abs(back - np.asarray(img)).max() <= 2    # RGB went through percent


@pytest.mark.parametrize("env, tty, mode", [
    ({"TERM": "xterm-256color"}, False, "none"),
    ({"TERM": "xterm-kitty"}, False, "none"),                 # piped: never pictures
    ({"TERM": "dumb"}, True, "none"),
    ({"TERM": "xterm-256color", "COLORTERM": "truecolor"}, True, "blocks"),
    ({"TERM": "xterm-kitty"}, True, "kitty"),
    ({"TERM": "xterm-256color", "KITTY_WINDOW_ID": "1"}, True, "kitty"),
    ({"TERM": "xterm-ghostty", "TERM_PROGRAM": "ghostty"}, True, "kitty"),
    ({"TERM": "xterm-256color", "TERM_PROGRAM": "iTerm.app"}, True, "iterm"),
    ({"TERM": "xterm-256color", "TERM_PROGRAM": "WezTerm"}, True, "iterm"),
    ({"TERM": "xterm-256color", "LC_TERMINAL": "iTerm2"}, True, "iterm"),
    ({"TERM": "foot"}, True, "sixel"),
    ({"TERM": "mlterm"}, True, "sixel"),
    ({"TERM": "tmux-256color", "TMUX": "/tmp/x,1,0", "KITTY_WINDOW_ID": "1"}, True, "blocks"),   # inherited
    ({"TERM": "screen", "TERM_PROGRAM": "iTerm.app"}, True, "blocks"),
    ({}, True, "blocks"),
])
def test_detect(env, tty, mode):
    assert detect(env, tty) == mode


def test_canvas_redraws_in_place_and_only_what_changed():
    out = io.StringIO()
    canvas = Canvas(out, "blocks", lines=4)
    grey, painted = Image.new("RGB", (8, 8), (128, 128, 128)), Image.new("RGB", (8, 8), (128, 128, 128))
    painted.paste(RED, (0, 0, 8, 2))                          # only the top line changes
    canvas.draw(grey)
    first = out.getvalue()
    assert first.startswith("\n" * 4 + "\x1b[4A") and first.count(UPPER_HALF) == 32 and first.count("\n") == 8
    out.seek(0), out.truncate()
    canvas.draw(painted)
    second = out.getvalue()
    assert second == "\x1b[4A" + halfblocks(painted, 8)[0] + "\n" + "\x1b[3B"
    out.seek(0), out.truncate()
    canvas.draw(painted)
    assert out.getvalue() == "\x1b[4A\x1b[4B"                   # nothing changed: only the cursor moves
    kitty_out = io.StringIO()
    k = Canvas(kitty_out, "kitty", lines=4, image_id=3)
    k.draw(grey), k.draw(painted)
    assert kitty_out.getvalue().count(kitty_delete(3)) == 1 and kitty_out.getvalue().endswith("\x1b[4B\r")
    silent = io.StringIO()
    Canvas(silent, "none", lines=4).draw(grey)
    assert silent.getvalue() == ""


# --- what is typed --------------------------------------------------------------------------------
def test_parse_command():
    assert parse_command("draw a red circle") is None
    assert parse_command("//slashes are fine") is None
    assert parse_command("/undo") == ("undo", "")
    assert parse_command("/SAVE  my chat.json ") == ("save", "my chat.json")
    assert parse_command("/save") == ("save", "")
    assert parse_command("/set cfg=5 temperature=0.5") == ("set", "cfg=5 temperature=0.5")
    for bad, message in [("/", "after the slash"), ("/frobnicate", "unknown command /frobnicate"),
                         ("/undo now", "takes nothing"), ("/load", "needs a file"), ("/attach  ", "needs a file")]:
        with pytest.raises(CommandError, match=message):
            parse_command(bad)
    assert parse_path("my chat.json") == Path("my chat.json")
    assert parse_path("'my chat.json'") == Path("my chat.json")
    with pytest.raises(CommandError):
        parse_path("'unterminated")


def test_parse_settings_types():
    values = parse_settings("cfg=5 temperature=0.5 top_k=none top_p=0.9 draft_k=3 provenance=off "
                            "background=transparent picture=always seed=7 max_words=12")
    assert values == {"cfg": 5.0, "temperature": 0.5, "top_k": None, "top_p": 0.9, "draft_k": 3,
                      "provenance": False, "background": "transparent", "picture": "always", "seed": 7,
                      "max_words": 12}
    assert type(values["cfg"]) is float and type(values["draft_k"]) is int
    assert parse_value("top_k", "40") == 40 and parse_value("provenance", "yes") is True
    assert parse_settings("cfg = 3 picture= never seed =4") == {"cfg": 3.0, "picture": "never", "seed": 4}
    for bad, message in [("colour=red", "unknown setting 'colour'"), ("cfg=abc", "cfg must be a number"),
                         ("cfg=nan", "cfg must be a number"), ("top_k=2.5", "top_k must be a whole number"),
                         ("cfg=none", "cfg must be a number"), ("provenance=maybe", "true or false"),
                         ("cfg5", "key=value"), ("picture=sometimes", "picture must be one of"),
                         ("seed=x", "seed must be a whole number")]:
        with pytest.raises(CommandError, match=message):
            parse_settings(bad)
    for bad in ("seed=-3", "seed=99999999999999999999"):        # the session's own range, checked before anything is set
        with pytest.raises(SessionError, match="seed must be an integer from 0 to 2147483647"):
            parse_settings(f"cfg=3 {bad}")


def test_picture_name():
    assert picture_name("Draw a RED circle, at the top-left!", "img_abc123") == "draw-a-red-circle-at-the-abc123.png"
    assert picture_name("!!!", "img_x") == "picture-x.png"


# --- the terminal on a tiny random model ----------------------------------------------------------
class Screen:
    """A Terminal with its output in strings (not a tty)."""

    def __init__(self, model, tmp_path, mode="none", stdout=None, **settings):
        self.out, self.err = stdout or io.StringIO(), io.StringIO()
        settings = {"picture": "always", **settings}
        self.term = Terminal(model, model.chat(seed=0, max_words=4, **settings), out_dir=tmp_path / "pics",
                             mode=mode, lines=8, stdout=self.out, stderr=self.err)

    def type(self, line: str) -> tuple[str, str]:
        """Handle one line; what it printed on stdout and stderr."""
        o, e = len(self.out.getvalue()), len(self.err.getvalue())
        assert self.term.handle(line)
        return self.out.getvalue()[o:], self.err.getvalue()[e:]


def test_streamed_words_wrap_between_words():
    plan = ("Here you go: a blue star in the top left, a blue star on the left, a blue star on the right and "
            "a blue star in the bottom left on a white background.")
    out = []
    wrap = WordWrap(out.append, 30, column=7)
    for i in range(0, len(plan), 3):                      # pieces of words, as tokens come
        wrap.feed(plan[i:i + 3])
    wrap.flush()
    lines = ("x" * 7 + "".join(out)).split("\n")
    assert all(len(line.rstrip()) <= 30 for line in lines) and len(lines) > 3
    assert " ".join(line.strip() for line in lines)[7:].strip() == plan
    long = []
    wrap = WordWrap(long.append, 5)
    wrap.feed("abcdefghij k")                             # a word longer than the line is written whole,
    wrap.flush()
    assert "".join(long) == "abcdefghij\nk"               # and the space after it becomes the line break


def test_a_streamed_reply_on_screen_breaks_only_between_words(tmp_path):
    from types import SimpleNamespace
    text = "Here you go: " + ", ".join(["a small red circle in the top left"] * 6) + " on a white background."
    events = [SimpleNamespace(kind="text", text=text[:n]) for n in range(1, len(text) + 1, 4)]
    events.append(SimpleNamespace(kind="done", reply=SimpleNamespace(text=text, images=[], ids=[], note="")))
    stdout = io.StringIO()
    term = Terminal(None, SimpleNamespace(conversation=()), out_dir=tmp_path, mode="none", stdout=stdout)
    term.play(iter(events))
    lines = stdout.getvalue().rstrip("\n").split("\n")
    assert len(lines) > 2 and all(len(line) <= 79 for line in lines)          # the fallback 80 columns, less one
    assert " ".join(line.strip() for line in lines) == "mmgen: " + text


def test_a_word_the_model_was_never_taught_is_named_after_the_reply(tiny_model, tmp_path):
    s = Screen(tiny_model, tmp_path, picture="never")
    before, tiny_model.vocabulary = tiny_model.vocabulary, frozenset({"draw", "a", "red", "circle"})
    try:
        out, err = s.type("draw a red kitten")
        assert out.startswith("mmgen: ") and out.endswith('\n(I don\'t know the word "kitten".)\n') and err == ""
        out, _ = s.type("draw a red circle")
        assert "know the word" not in out
    finally:
        tiny_model.vocabulary = before


def test_messages_and_commands(tiny_model, tmp_path):
    s = Screen(tiny_model, tmp_path)
    out, err = s.type("draw a red circle")
    assert out.startswith("mmgen:") and not err and "\x1b" not in out
    saved = Path(re.search(r"saved (\S+\.png)", out).group(1))
    with Image.open(saved) as im:
        assert im.size == (128, 128) and im.info["mmgen:prompt"] == "draw a red circle"
    first_id = im.info["mmgen:id"]
    out, _ = s.type("/set cfg=2 picture=never seed=11")
    assert out == "set cfg=2.0 picture=never seed=11\n"
    assert s.term.chat.settings.cfg == 2.0 and s.term.chat.settings.picture == "never" and s.term.chat.seed == 11
    out, _ = s.type("what is it?")
    assert "saved" not in out and len(s.term.chat.conversation.turns) == 4
    out, _ = s.type("/history")
    assert "  1 you: draw a red circle" in out and f"[picture {first_id}, seed 0, {saved}]" in out
    assert "  3 you: what is it?" in out
    out, _ = s.type("/undo")
    assert "2 messages left" in out
    out, _ = s.type(f"/save {tmp_path / 'chat.json'}")
    assert json.loads((tmp_path / "chat.json").read_text())["format"] == "mmgen-session-1"
    s.type("/new")
    assert s.term.chat.conversation.turns == ()
    out, _ = s.type(f"/load {tmp_path / 'chat.json'}")
    assert "2 messages" in out and len(s.term.chat.conversation.turns) == 2
    out, _ = s.type(f"/attach {saved}")
    assert "attached" in out and s.term.prompt() == "(+picture) > "
    s.type("/set picture=always")
    s.type("make it blue")
    turns = s.term.chat.conversation.turns
    assert turns[-2].codes is not None and turns[-1].codes is not None and s.term.attachment is None
    out, _ = s.type("/retry")
    assert "answering again" in out and len(s.term.chat.conversation.turns) == 4
    out, _ = s.type("/save")                                   # a dated file in the pictures folder
    assert list((tmp_path / "pics").glob("session-*.json"))
    out, _ = s.type("/help")
    assert all(f"/{name}" in out for name in ("help", "new", "undo", "retry", "save", "load", "attach", "set",
                                              "history", "quit"))
    assert not s.term.handle("/quit")


def test_new_and_load_ask_before_dropping_an_unsaved_conversation(tiny_model, tmp_path):
    s = Screen(tiny_model, tmp_path, picture="never")
    s.type("draw a red circle")
    s.type(f"/save {tmp_path / 'one.json'}")
    s.type("make it blue")
    kept = s.term.chat.conversation
    _, err = s.type(f"/load {tmp_path / 'missing.json'}")           # a bad file says so first
    assert "no session file" in err and s.term.chat.conversation is kept
    for command in ("/new", f"/load {tmp_path / 'one.json'}"):
        out, err = s.type(command)
        assert out == "" and err.startswith("this conversation is not saved: /save keeps it")
        assert s.term.chat.conversation is kept
    s.type("what colour is it?")                                      # said in between: warned again
    _, err = s.type("/new")
    assert "not saved" in err and len(s.term.chat.conversation.turns) == 6
    out, err = s.type("/new")                                        # the same command again goes ahead
    assert out == "new conversation\n" and err == "" and s.term.chat.conversation.turns == ()
    out, err = s.type(f"/load {tmp_path / 'one.json'}")             # nothing unsaved: no question asked
    assert "2 messages" in out and err == ""
    s.type("make it green")
    shutil.copy(tmp_path / "one.json", tmp_path / "two.json")
    s.type(f"/load {tmp_path / 'one.json'}")
    _, err = s.type(f"/load {tmp_path / 'two.json'}")                # another file: asked again
    assert "not saved" in err and len(s.term.chat.conversation.turns) == 4
    s.term.interactive = False                                        # a piped script is never asked
    out, err = s.type("/new")
    assert out == "new conversation\n" and err == ""


def test_the_pictures_folder_is_checked_before_the_chat_starts(tmp_path):
    from mmgen.oneshot import BadInput
    from mmgen.terminal import picture_folder
    assert picture_folder(str(tmp_path / "new" / "pics")).is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(BadInput, match=r"cannot save pictures in .*file.pics: Not a directory \(--out DIR"):
        picture_folder(str(tmp_path / "file" / "pics"))


def test_every_mistake_is_one_line(tiny_model, tmp_path):
    s = Screen(tiny_model, tmp_path)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x00\x01 not a picture")
    damaged = tmp_path / "damaged.json"
    damaged.write_text('{"format": "mmgen-session-1", "turns": [')
    (tmp_path / "folder").mkdir()
    cases = ["/bogus", "/set colour=red", "/set cfg=99", "/set cfg=abc", "/set cfg=3 seed=-3", "/load", f"/load {tmp_path / 'missing.json'}",
             f"/load {damaged}", f"/load {junk}", f"/attach {tmp_path / 'missing.png'}", f"/attach {junk}",
             f"/save {tmp_path / 'folder'}", "/undo now", "x" * 100_000, "bin\x00ary", "draw a red circle \udcff",
             "/attach ~nosuchuser-mmgen/x.png", "/load a\x00b.json", "/save a\x00b.json", f"/attach {'a' * 300}.png"]
    for line in cases:
        out, err = s.type(line)
        assert err.count("\n") == 1 and "Traceback" not in err and "went wrong" not in err, (line, err)
    assert s.term.chat.conversation.turns == () and s.term.chat.settings.cfg == Settings().cfg
    _, err = s.type(f"/attach {junk}")                            # said in words, not exception names
    assert "is not a PNG, JPEG, WEBP or other picture file" in err and "Error" not in err
    _, err = s.type(f"/load {junk}")
    assert "is not a session file (a session is JSON written by /save)" in err and "Error" not in err
    out, err = s.type("draw a red circle \udcff")                # a paste that was not UTF-8
    assert err.startswith("the message is not UTF-8 text") and "TextInputSequence" not in err
    out, err = s.type("/undo")
    assert out == "nothing to undo\n" and not err
    out, err = s.type("/retry")
    assert "no message to retry" in err


class InterruptAt(io.StringIO):
    """stdout whose nth write of picture lines raises KeyboardInterrupt, as Ctrl-C would (the tiny
    model's pictures are flat grey, so only the first draw of each writes picture lines)."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def write(self, text):
        if UPPER_HALF in text:
            self.n -= 1
            if self.n == 0:
                raise KeyboardInterrupt
        return super().write(text)


def test_ctrl_c_stops_the_picture_not_the_program(tiny_model, tmp_path):
    s = Screen(tiny_model, tmp_path, mode="blocks", stdout=InterruptAt(1))
    out, _ = s.type("draw a red circle")
    assert "stopped; the conversation is as it was" in out
    assert s.term.chat.conversation.turns == () and not (tmp_path / "pics").exists()
    out, _ = s.type("draw a red circle")                       # the next message works as usual
    assert "saved" in out and len(s.term.chat.conversation.turns) == 2
    assert out.count("\x1b[8A") == 17                          # 16 previews + the picture, all in place
    # Ctrl-D at the prompt leaves quietly
    def read(prompt):
        raise EOFError
    s.term.loop(read)


def test_retry_after_ctrl_c_sends_the_stopped_message_again(tiny_model, tmp_path):
    s = Screen(tiny_model, tmp_path, mode="blocks", stdout=InterruptAt(2))
    s.type("draw a red circle")                                 # the first reply finishes
    out, _ = s.type("draw a blue square")                       # Ctrl-C during the second picture
    assert "(/retry sends it again)" in out and len(s.term.chat.conversation.turns) == 2
    out, _ = s.type("/retry")
    assert "answering your stopped message again" in out and "saved" in out
    turns = s.term.chat.conversation.turns
    assert [t.text for t in turns[::2]] == ["draw a red circle", "draw a blue square"]
    assert turns[-1].seed == (s.term.chat.seed + 7919 * 2 + 1) % (2**31)     # another seed than the stopped try
    out, _ = s.type("/retry")                                   # then /retry answers that message again, as usual
    assert "answering again" in out and [t.text for t in s.term.chat.conversation.turns[::2]] == \
        ["draw a red circle", "draw a blue square"]


def test_retry_stopped_again_draws_with_yet_another_seed(tiny_model, tmp_path):
    s = Screen(tiny_model, tmp_path, mode="blocks", stdout=InterruptAt(1))
    chat, seeds = s.term.chat, []
    stream = chat.stream

    def recorded(text, image=None, seed=None, **kwargs):          # the seed each try draws with
        seeds.append(chat.turn_seed() if seed is None else seed)
        return stream(text, image, seed=seed, **kwargs)
    chat.stream = recorded
    s.type("draw a red circle")                                 # stopped
    for _ in range(2):
        s.out.n = 1                                             # Ctrl-C during the retried picture too
        out, _ = s.type("/retry")
        assert "answering your stopped message again" in out and "/retry sends it again" in out
    assert len(seeds) == 3 and len(set(seeds)) == 3, seeds


def test_retry_after_ctrl_c_sends_a_picture_attached_since(tiny_model, tmp_path):
    from PIL import Image
    s = Screen(tiny_model, tmp_path, mode="blocks", stdout=InterruptAt(1))
    s.type("draw a blue square")                                # stopped, nothing attached
    Image.new("RGB", (128, 128), "red").save(tmp_path / "red.png")
    s.type(f"/attach {tmp_path / 'red.png'}")
    s.type("/retry")
    user = s.term.chat.conversation.turns[0]
    assert user.text == "draw a blue square" and user.codes is not None


def test_retry_after_ctrl_c_and_another_change_retries_as_usual(tiny_model, tmp_path):
    s = Screen(tiny_model, tmp_path, mode="blocks", stdout=InterruptAt(2))
    s.type("draw a red circle")
    s.type("draw a blue square")                                # stopped
    s.type("/undo")                                             # the conversation changed since
    out, err = s.type("/retry")
    assert "stopped message" not in out and "no message to retry" in err


def keys(*typed):
    """A read function for Terminal.loop: each item is a line, or KeyboardInterrupt for Ctrl-C;
    past the end, Ctrl-D."""
    pending = list(typed)

    def read(prompt):
        if not pending:
            raise EOFError
        item = pending.pop(0)
        if item is KeyboardInterrupt:
            raise KeyboardInterrupt
        return item
    return read


def test_ctrl_c_at_the_prompt_says_how_to_leave_and_twice_leaves(tiny_model, tmp_path):
    s = Screen(tiny_model, tmp_path)
    s.term.banner()
    assert "Ctrl-C twice leaves" in s.out.getvalue()
    s.term.loop(keys(KeyboardInterrupt, "/history", KeyboardInterrupt, KeyboardInterrupt, "never read"))
    out = s.out.getvalue()
    assert out.count("Ctrl-C again, Ctrl-D or /quit leaves") == 2      # a line between: the first warns again
    assert "not saved" not in out                                        # nothing to lose yet
    s.type("draw a red circle")
    before = len(s.out.getvalue())
    s.term.loop(keys(KeyboardInterrupt, KeyboardInterrupt))
    assert "this conversation is not saved (/save keeps it)" in s.out.getvalue()[before:]
    s.type(f"/save {tmp_path / 'chat.json'}")
    before = len(s.out.getvalue())
    s.term.loop(keys(KeyboardInterrupt, KeyboardInterrupt))
    assert "not saved" not in s.out.getvalue()[before:]


def test_input_history_is_told_and_can_be_turned_off(tiny_model, tmp_path):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert "--no-history" in parser.format_help() and "MMGEN_NO_HISTORY=1" in parser.format_help()
    assert history_file(parser.parse_args([]), {}) == Path("~/.mmgen_history").expanduser()
    assert history_file(parser.parse_args(["--history-file", str(tmp_path / "h")]), {}) == tmp_path / "h"
    assert history_file(parser.parse_args(["--no-history"]), {}) is None
    assert history_file(parser.parse_args([]), {"MMGEN_NO_HISTORY": "1"}) is None
    assert history_file(parser.parse_args([]), {"MMGEN_NO_HISTORY": "0"}) is not None
    with pytest.raises(BadInput, match="--history-file: the file name .* is too long"):
        history_file(parser.parse_args(["--history-file", "h" * 300]), {})
    out = io.StringIO()
    Terminal(tiny_model, tiny_model.chat(), out_dir=tmp_path, mode="none", history=tmp_path / "h", stdout=out).banner()
    assert f"kept in {tmp_path / 'h'}" in out.getvalue() and "--no-history" in out.getvalue()
    out = io.StringIO()
    Terminal(tiny_model, tiny_model.chat(), out_dir=tmp_path, mode="none", stdout=out).banner()
    assert "kept in" not in out.getvalue()


def test_piped_chat_has_no_escape_codes(tiny_checkpoints, tmp_path):
    """`python chat.py` with stdin and stdout piped: words and saved paths, no picture, no escapes."""
    script = "/set max_words=4\ndraw a red circle\n/history\n/bogus\ndraw a \udcff circle\n"   # \udcff: the byte 0xff
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(REPO / "chat.py"), "--checkpoints", str(tiny_checkpoints), "--out",
                           str(tmp_path / "pics"), "--picture", "always", "--seed", "3"], input=script,
                          capture_output=True, text=True, errors="surrogateescape", env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and UPPER_HALF not in done.stdout
    assert done.stderr.splitlines() == ["unknown command /bogus; /help lists the commands",
                                        str(check_text_error("\udcff"))]
    saved = re.search(r"saved (\S+\.png)", done.stdout).group(1)
    assert Path(saved).is_file() and "  2 mmgen:" in done.stdout and done.stdout.endswith("bye\n")
    bad = subprocess.run([sys.executable, str(REPO / "chat.py"), "--checkpoints", str(tmp_path / "nowhere")],
                         input="", capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
