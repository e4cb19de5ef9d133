"""Load on `mmgen serve`: many simultaneous generation requests against one server on loopback.

    python benchmarks/server_load.py --checkpoints checkpoints/          # the shipped model
    python benchmarks/server_load.py --tiny                              # a tiny random model made on the spot
    python benchmarks/server_load.py --tiny --requests 50 --max-words 4 --threads 1

Starts the server as a person would (`python -m mmgen.cli serve ...` on a free loopback port), fires
all requests at once (POST /v1/images/generations, one picture each, seeded), checks every answer
(HTTP 200, a 128×128 PNG), checks the server is healthy afterwards and still answers, then stops
it with SIGINT. Prints throughput and latency percentiles; exits 1 only if an answer was lost or
wrong — never on a time. All traffic stays on 127.0.0.1; every request has a timeout.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image


def make_tiny_checkpoints(root: Path) -> Path:
    """A tiny random image tokenizer + transformer (as tests/conftest.py makes): the plumbing, not the pictures."""
    import torch

    from mmgen.model import build_model
    from mmgen.stream import Stream
    from mmgen.text import TextTokenizer
    from mmgen.vq import PRESETS, VQTokenizer
    text = TextTokenizer.from_pretrained()
    torch.manual_seed(0)
    vq = VQTokenizer(PRESETS["tiny"])
    vq.save_pretrained(root / "vq")
    lm = build_model("tiny", Stream(text, vq.codebook_size).vocab_size, seed=0)
    lm.config.mmgen_preset = "tiny"
    lm.save_pretrained(root / "lm")
    text.save_pretrained(root / "lm")
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int, method: str, path: str, body: dict | None = None, timeout: float = 600.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=json.dumps(body).encode() if body is not None else None,
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def check_picture(status: int, body) -> str | None:
    """None if the answer is one valid 128×128 PNG, else what is wrong with it."""
    if status != 200:
        return f"HTTP {status}: {body.get('error', {}).get('message') if isinstance(body, dict) else body}"
    try:
        data = body["data"]
        if len(data) != 1:
            return f"{len(data)} pictures instead of 1"
        image = Image.open(io.BytesIO(base64.b64decode(data[0]["b64_json"])))
        image.load()
    except Exception as e:      # noqa: BLE001 — any failure to read the answer is a wrong answer
        return f"unreadable answer: {type(e).__name__}: {e}"
    if image.format != "PNG" or image.size != (128, 128):
        return f"a {image.format} of {image.size}, not a 128×128 PNG"
    return None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoints", type=Path, help="checkpoints folder for the server")
    which.add_argument("--tiny", action="store_true", help="make a tiny random model in a temporary folder")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--max-words", type=int, default=4, help="server's longest reply before the picture")
    parser.add_argument("--threads", type=int, default=1, help="server's torch CPU threads")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per request (client and server)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mmgen-load-") as tmp:
        checkpoints = make_tiny_checkpoints(Path(tmp)) if args.tiny else args.checkpoints
        port = free_port()
        command = [sys.executable, "-m", "mmgen.cli", "serve", "--checkpoints", str(checkpoints), "--port", str(port),
                   "--queue", str(args.requests + 8), "--timeout", str(args.timeout), "--threads", str(args.threads),
                   "--max-words", str(args.max_words), "--log-level", "warning"]
        env = {k: v for k, v in os.environ.items() if k != "MMGEN_API_KEY"}
        server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            return run_load(server, port, args)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()


def run_load(server: subprocess.Popen, port: int, args) -> int:
    t0 = time.perf_counter()
    while True:
        if server.poll() is not None:
            print(f"the server exited ({server.returncode}) before answering:\n{server.stdout.read()}")
            return 1
        try:
            if request(port, "GET", "/health", timeout=5)[0] == 200:
                break
        except OSError:
            pass
        if time.perf_counter() - t0 > 300:
            print("the server did not come up in 300 s")
            return 1
        time.sleep(0.2)
    print(f"server up in {time.perf_counter() - t0:.1f} s on 127.0.0.1:{port}")
    status, body = request(port, "POST", "/v1/images/generations", {"prompt": "warm-up", "seed": 0}, args.timeout)
    if check_picture(status, body):
        print(f"warm-up failed: {check_picture(status, body)}")
        return 1

    def one(i: int):
        start = time.perf_counter()
        try:
            status, body = request(port, "POST", "/v1/images/generations",
                                   {"prompt": f"draw {i % 5 + 1} red circles", "seed": i}, args.timeout)
            problem = check_picture(status, body)
        except Exception as e:      # noqa: BLE001 — a lost connection is a lost answer
            problem = f"{type(e).__name__}: {e}"
        return time.perf_counter() - start, problem

    start = time.perf_counter()
    with ThreadPoolExecutor(args.requests) as pool:
        results = list(pool.map(one, range(args.requests)))
    wall = time.perf_counter() - start
    latencies = [t for t, problem in results if problem is None]
    problems = [(i, problem) for i, (_, problem) in enumerate(results) if problem is not None]

    status, health = request(port, "GET", "/health", timeout=10)
    after, body = request(port, "POST", "/v1/images/generations", {"prompt": "still there?", "seed": 1}, args.timeout)
    healthy = (status == 200 and health.get("status") == "ok" and health.get("waiting") == 0
               and not check_picture(after, body))

    server.send_signal(signal.SIGINT)
    try:
        code = server.wait(60)
    except subprocess.TimeoutExpired:
        code = None

    print(f"requests    {args.requests} at once, {len(latencies)} answered correctly, {len(problems)} lost or wrong")
    print(f"wall        {wall:.2f} s")
    print(f"throughput  {len(latencies) / wall:.2f} pictures/s")
    if latencies:
        print("latency     p50 {:.2f} s   p90 {:.2f} s   p99 {:.2f} s   max {:.2f} s".format(
            percentile(latencies, 50), percentile(latencies, 90), percentile(latencies, 99), max(latencies)))
    print(f"after       /health {health}; another request {'answered' if not check_picture(after, body) else 'FAILED'}")
    print(f"stop        SIGINT → exit {code if code is not None else 'none within 60 s'}")
    for i, problem in problems[:10]:
        print(f"  request {i}: {problem}")
    return 0 if not problems and healthy else 1


if __name__ == "__main__":
    sys.exit(main())
