"""The README's examples run as written: the Python quick start and the command-line chain.

Each block is found by the HTML comment in front of its fence (`<!-- test: quickstart -->`,
`<!-- test: cli -->`) and run unchanged in a fresh folder with the shipped checkpoints: the Python
block in a subprocess of this interpreter, the command lines one by one with this environment's
`mmgen`. Every picture the block names must then exist (for `generate -n N -o NAME`, the names
the README says it writes, not NAME itself). Nothing asserts on time.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
TIMEOUT = 900                      # seconds per command; a loaded shared machine is slow
MMGEN = Path(sys.executable).parent / "mmgen"

pytestmark = pytest.mark.skipif(not (REPO / "checkpoints" / "lm" / "model.safetensors").is_file(),
                                reason="no shipped transformer")


def block(name: str) -> tuple[str, str]:
    """(language, code) of the fenced block right after `<!-- test: name -->`."""
    text = README.read_text(encoding="utf-8")
    found = re.search(r"<!--\s*test:\s*" + re.escape(name) + r"\s*-->\s*\n```(\w*)\n(.*?)\n```", text, re.S)
    assert found, f"README.md has no block marked <!-- test: {name} -->"
    return found.group(1), found.group(2)


def environment() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{MMGEN.parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, env=environment(), capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, f"{shlex.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


def assert_pictures(names: set[str], folder: Path) -> None:
    from PIL import Image
    assert names, "the block names no picture"
    for name in sorted(names):
        path = folder / name
        assert path.is_file(), f"the README's block names {name}, but it was not written (folder: {sorted(os.listdir(folder))})"
        with Image.open(path) as img:
            assert img.size == (128, 128), f"{name} is {img.size}"


def test_readme_quickstart_runs(tmp_path):
    language, code = block("quickstart")
    assert language == "python"
    done = run([sys.executable, "-c", code], tmp_path)
    assert done.stdout.strip(), "the quick start prints the replies"
    assert_pictures(set(re.findall(r"""\.save\(["']([^"']+\.png)["']\)""", code)), tmp_path)


def test_readme_cli_chain_runs(tmp_path):
    language, code = block("cli")
    assert language == "bash"
    named, templates = set(re.findall(r"[\w./{}-]+\.png", code)), set()
    lines = [line for line in code.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert lines
    for line in lines:
        args = shlex.split(line, comments=True)
        assert args[0] == "mmgen", f"a README command line that is not mmgen: {line}"
        if args[1] == "generate" and "-n" in args and int(args[args.index("-n") + 1]) > 1:
            templates.add(args[args.index("-o") + 1])     # -n 2 writes NAME-1, NAME-2: the README names those
        done = run([str(MMGEN), *args[1:]], tmp_path)
        if args[1] == "ask":
            assert done.stdout.strip(), f"no answer from: {line}"
    assert_pictures(named - templates, tmp_path)
    for template in templates:
        assert not (tmp_path / template).exists(), f"{template} was written, though -n > 1 numbers the files"
