"""`mmgen generate | edit | ask` on a tiny random model: files, numbering, provenance, transparency,
and bad input (one line on stderr, exit code 2, no traceback), in-process and as a real process."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PIL import Image

from mmgen.cli import main
from mmgen.imageutil import TRAINED_ALGORITHMIC_MEDIA


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # like conftest's tiny models: two threads fighting over two busy cores are many times slower
    import torch
    torch.set_num_threads(1)


def mmgen(*args) -> int:
    return main([str(a) for a in args])


def assert_words_then_paths(out: str, paths: list) -> None:
    """What generate and edit print: the reply's words (the tiny model always says some), then each saved path."""
    saved = "".join(f"{p}\n" for p in paths)
    assert out.endswith(saved) and out.removesuffix(saved).strip(), out


def test_generate(tiny_checkpoints, tmp_path, capsys):
    ck = ("--checkpoints", tiny_checkpoints)
    assert mmgen("generate", "two blue squares", "-o", tmp_path / "one.png", "--seed", 1, *ck) == 0
    assert_words_then_paths(capsys.readouterr().out, [tmp_path / "one.png"])
    with Image.open(tmp_path / "one.png") as im:
        assert im.size == (128, 128) and im.mode == "RGB"
        assert im.info["mmgen:prompt"] == "two blue squares" and im.info["mmgen:seed"] == "1"
        assert TRAINED_ALGORITHMIC_MEDIA in im.info["XML:com.adobe.xmp"]
    # n > 1: -1, -2, … before the extension, or the {i} pattern; folders are made as needed
    assert mmgen("generate", "a star", "-n", 3, "-o", tmp_path / "many.png", *ck) == 0
    assert_words_then_paths(capsys.readouterr().out, [tmp_path / f"many-{i}.png" for i in (1, 2, 3)])
    assert [p.name for p in sorted(tmp_path.glob("many-*.png"))] == ["many-1.png", "many-2.png", "many-3.png"]
    metas = []
    for i in (1, 2, 3):                      # one batch, and each picture its own provenance id
        with Image.open(tmp_path / f"many-{i}.png") as im:
            metas.append(im.info)
    assert len({m["mmgen:id"] for m in metas}) == 3
    assert [m["mmgen:batch"] for m in metas] == ["1/3", "2/3", "3/3"] and len({m["mmgen:seed"] for m in metas}) == 1
    assert mmgen("generate", "a star", "-n", 2, "-o", tmp_path / "sub" / "star-{i}.webp", "--background",
                 "transparent", "--no-provenance", *ck) == 0
    for i in (1, 2):
        with Image.open(tmp_path / "sub" / f"star-{i}.webp") as im:
            assert im.mode == "RGBA" and "xmp" not in im.info
    capsys.readouterr()


def test_edit_and_ask(tiny_checkpoints, tmp_path, capsys):
    ck = ("--checkpoints", tiny_checkpoints)
    Image.new("RGB", (96, 64), (200, 30, 30)).save(tmp_path / "in.png")
    assert mmgen("edit", tmp_path / "in.png", "make it blue", "-o", tmp_path / "out.png", "--seed", 2, *ck) == 0
    assert_words_then_paths(capsys.readouterr().out, [tmp_path / "out.png"])
    with Image.open(tmp_path / "out.png") as im:
        assert im.size == (128, 128) and im.info["mmgen:prompt"] == "make it blue"
        assert im.info["mmgen:parent"] == "user-upload"
    capsys.readouterr()
    # the random model may take the question for a change (then `ask` refuses it, below): either
    # way one clean line
    code = mmgen("ask", tmp_path / "in.png", "what colour is it?", "--seed", 2, *ck)
    captured = capsys.readouterr()
    out = captured.out if code == 0 else captured.err
    assert code in (0, 2) and out.endswith("\n") and out.count("\n") == 1 and out.strip()


class ScriptedModel:
    """Stands in for the model where the test needs a given reply, which a random model cannot promise."""
    def __init__(self, reply):
        self.reply, self.asked = reply, []

    def chat(self, seed=None, **settings):
        self.seed = seed
        return self

    def send(self, text, image=None, **kwargs):
        return self.reply

    def ask(self, question, image=None):
        self.asked.append((question, image is not None))
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply


def test_ask_answers_a_question_and_refuses_a_change(tmp_path, capsys, monkeypatch):
    from mmgen import oneshot
    from mmgen.inputs import NotAQuestion
    from mmgen.replies import Reply
    picture = tmp_path / "my picture.png"
    Image.new("RGB", (32, 32)).save(picture)
    answer = ScriptedModel(Reply(text="There are two.", note='I don\'t know the word "kittens".'))
    monkeypatch.setattr(oneshot, "load_model", lambda checkpoints: answer)
    assert mmgen("ask", picture, "how many kittens?") == 0
    captured = capsys.readouterr()
    assert captured.out == "There are two.\n" and captured.err == 'note: I don\'t know the word "kittens".\n'
    assert answer.asked == [("how many kittens?", True)]
    change = ScriptedModel(NotAQuestion("the model took 'make the circle blue' for a change to make"))
    monkeypatch.setattr(oneshot, "load_model", lambda checkpoints: change)
    assert mmgen("ask", picture, "make the circle blue", "--seed", 3) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == (        # one line, with the command to run instead
        f"mmgen ask: the model took 'make the circle blue' for a change to make; to make it: "
        f"mmgen edit '{picture}' 'make the circle blue' -o out.png --seed 3\n")


def test_generate_and_edit_print_the_note_on_stderr(tmp_path, capsys, monkeypatch):
    from mmgen import oneshot
    from mmgen.replies import Reply
    drawn = Reply(text="Here it is.", images=[Image.new("RGB", (8, 8))], ids=["img_1"], id="img_1",
                  note='Did you mean "square" for "sqaure"?')
    monkeypatch.setattr(oneshot, "load_model", lambda checkpoints: ScriptedModel(drawn))
    assert mmgen("generate", "a red sqaure", "-o", tmp_path / "x.png") == 0
    captured = capsys.readouterr()
    assert captured.out == f"Here it is.\n{tmp_path / 'x.png'}\n"
    assert captured.err == 'note: Did you mean "square" for "sqaure"?\n'


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    Image.new("RGB", (16, 16)).save(root / "ok.png")
    (root / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n but then binary junk \x00\xff")
    (root / "afile").write_text("not a folder")
    (root / "adir").mkdir()
    return root


BAD = [   # (arguments, what the one line says)
    (["generate", "", "-o", "{d}/x.png"], "the prompt is empty"),
    (["generate", "   ", "-o", "{d}/x.png"], "the prompt is empty"),
    (["generate", "x" * 100_000, "-o", "{d}/x.png"], "100,000 characters"),
    (["generate", "bin\x01ary\x7f", "-o", "{d}/x.png"], "control characters"),
    (["generate", "a red circle \udcff", "-o", "{d}/x.png"], "the prompt is not UTF-8 text"),   # argv's byte 0xff
    (["generate", "a star", "-o", "{d}/x.gif"], "must end in"),
    (["generate", "a star", "-o", "{d}/adir"], "adir is a folder; give a file name such as"),
    (["generate", "a star", "-o", "{d}/afile/x.png"], "is not a folder"),
    (["generate", "a star", "-n", "0", "-o", "{d}/x.png"], "-n must be from 1 to 4"),
    (["generate", "a star", "-n", "9", "-o", "{d}/x.png"], "-n must be from 1 to 4"),
    (["generate", "a star", "--cfg", "99", "-o", "{d}/x.png"], "cfg must be"),
    (["generate", "a star", "--word-cfg", "-1", "-o", "{d}/x.png"], "word_cfg must be"),
    (["generate", "a star", "--temperature", "-1", "-o", "{d}/x.png"], "temperature must be"),
    (["generate", "a star", "-o", "{d}/x.png", "--checkpoints", "{d}/nowhere"], "cannot load the model"),
    (["edit", "{d}/missing.png", "make it blue", "-o", "{d}/x.png"], "no picture at"),
    (["edit", "{d}/junk.png", "make it blue", "-o", "{d}/x.png"], "cannot read"),
    (["edit", "{d}/adir", "make it blue", "-o", "{d}/x.png"], "no picture at"),
    (["edit", "{d}/ok.png", "", "-o", "{d}/x.png"], "the instruction is empty"),
    (["ask", "{d}/junk.png", "what is it?"], "cannot read"),
    (["ask", "{d}/ok.png", "\x00"], "control characters"),
    (["generate", "a star", "-o", "{d}/" + "a" * 300 + ".png"], "is too long"),
    (["edit", "{d}/" + "a" * 300 + ".png", "make it blue", "-o", "{d}/x.png"], "is too long"),
    (["ask", "~nosuchuser-mmgen/p.png", "what is it?"], "no picture at ~nosuchuser-mmgen/p.png"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[f"{a[0]}-{m}" for a, m in BAD])
def test_bad_input_in_process(files, capsys, args, message):
    assert mmgen(*[a.replace("{d}", str(files)) for a in args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err
    assert captured.err.count("\n") == 1 and captured.err.startswith(f"mmgen {args[0]}: ")
    assert not (files / "x.png").exists()


@pytest.mark.parametrize("args, message", [(["bogus"], "unknown command 'bogus'"),
                                           (["train", "bogus"], "unknown command 'train bogus'"),
                                           (["train"], "name one of its commands"),
                                           (["--bogus"], "'--bogus' is not a command")])
def test_an_unknown_command_is_named(capsys, args, message):
    assert mmgen(*args) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(f"mmgen{' train' if args == ['train'] else ''}: {message}")
    assert "commands:" in captured.err                                     # then what the commands are


def help_text(capsys, command: str) -> str:
    with pytest.raises(SystemExit) as e:
        mmgen(command, "--help")
    assert e.value.code == 0
    return " ".join(capsys.readouterr().out.split())               # argparse wraps lines


@pytest.mark.parametrize("args, suggestion", [(["genrate", "x"], "did you mean 'generate'?"),
                                              (["trian", "vq"], "did you mean 'train'?"),
                                              (["train", "lmm"], "did you mean 'train lm'?")])
def test_a_mistyped_command_gets_a_suggestion(capsys, args, suggestion):
    assert mmgen(*args) == 2
    first_line = capsys.readouterr().err.splitlines()[0]
    assert first_line.startswith("mmgen: unknown command") and first_line.endswith(suggestion)


def test_no_command_prints_the_commands_as_a_mistake(capsys):
    assert mmgen() == 2                       # a script that forgot its command fails
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("usage: mmgen COMMAND") and "generate" in captured.err
    assert mmgen("--help") == 0 and "usage: mmgen COMMAND" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["generate", "edit", "chat"])
def test_help_shows_the_settings_defaults(capsys, command):
    from mmgen.settings import Settings
    text = help_text(capsys, command)
    assert f"0-20 (default {Settings.cfg})" in text and f"0-5 (default {Settings.temperature})" in text
    assert f"(default {Settings.background})" in text and "seed, 0-2147483647" in text
    if command != "edit":
        assert f"0-20 (default {Settings.word_cfg})" in text
    if command == "chat":
        assert f"(default {Settings.picture})" in text


@pytest.mark.parametrize("command, missing", [
    ("ask", ["--cfg", "--word-cfg", "--temperature", "--background", "--no-provenance", "--refine"]),  # no picture
    ("edit", ["--word-cfg"]),               # guidance before the first picture: an edit starts with one
])
def test_help_lists_only_the_options_that_apply(capsys, command, missing):
    text = help_text(capsys, command)
    assert "--checkpoints" in text and "--seed" in text
    assert [option for option in missing if option in text] == []


def run(*args: str | bytes) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "mmgen.cli", *args], capture_output=True, env=env, timeout=300)


PROCESS_BAD = [   # argv as a real shell would pass it, bytes included
    ["generate", "", "-o", "{d}/x.png"],
    ["generate", b"\xff\xfe binary \x80junk", "-o", "{d}/x.png"],     # not UTF-8 (argv cannot hold NUL)
    ["generate", "x" * 100_000, "-o", "{d}/x.png"],
    ["generate", "a star", "-o", "{d}/afile/x.png"],
    ["generate", "a star", "-n", "many", "-o", "{d}/x.png"],
    ["generate", "a star", "--background", "plaid", "-o", "{d}/x.png"],
    ["generate", "a star"],                                              # no -o
    ["generate", "a star", "-o", "{d}/x.png", "--seed", "99999999999999999999"],   # past 2**64: no traceback
    ["generate", "a star", "-o", "{d}/x.png", "--seed", "-3"],
    ["edit", "{d}/ok.png", "make it blue", "-o", "{d}/x.png", "--seed", "x"],
    ["edit", "{d}/missing.png", "make it blue", "-o", "{d}/x.png"],
    ["edit", "{d}/junk.png", "make it blue", "-o", "{d}/x.png"],
    ["ask", "{d}/ok.png"],                                               # no question
]


@pytest.mark.parametrize("args", PROCESS_BAD, ids=range(len(PROCESS_BAD)))
def test_bad_input_as_a_process(files, args):
    done = run(*[a.replace("{d}", str(files)) if isinstance(a, str) else a for a in args])
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 2, err
    assert done.stdout == b"" and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"mmgen {args[0]}: ")
    if "--seed" in args:                         # the session's range, named (inputs.check_seed)
        assert "seed must be an integer from 0 to 2147483647" in err
