#!/usr/bin/env python3
"""Soak test for `forge serve` (not run in CI): mixed load for a while, watching memory.

Worker threads send, chosen at random: chat and completion requests, streaming and not, greedy and
sampled, json_schema, n=2 with logprobs, clients that disconnect mid-stream, and now and then a
malformed request (bad JSON, unknown model, max_tokens past the context, a bad role, a wrong
content type), which must be answered 4xx. Every second the server's RSS (VmRSS from
/proc/PID/status) and its KV-blocks-in-use gauge from /metrics are sampled into a CSV.

The first `--warmup` seconds are load without counting, so that plans, pipelines and allocator
pools exist; "RSS at start" is taken then. After `--duration` seconds the load stops, the server
is given a few idle seconds, and "RSS at end" is taken. Reported: requests done and failed by
kind and status, peak RSS, RSS at start and end, the drift (end - start) and the slope of a
least-squares line through the loaded samples (KiB/min), and whether the KV blocks went back to
zero once idle. Exit status 1 on any unexpected outcome (a 5xx, a connection error, a 2xx for a
malformed request, a 4xx for a good one, the server dying, KV blocks still in use).

Usage (needs the packages in tests/openai/requirements.txt):

    .venv/bin/python scripts/soak.py                         # 600 s, CPU, samples in soak.csv
    .venv/bin/python scripts/soak.py --duration 120 --backend wgpu --workers 4 --csv /tmp/s.csv
    .venv/bin/python scripts/soak.py --url http://127.0.0.1:8080 --pid 1234   # a running server
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import random
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "openai"))
from forge_server import ForgeServer, missing_prerequisite, rss_kib  # noqa: E402

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "student": {"type": "boolean"},
                   "colour": {"type": "string", "enum": ["red", "green", "blue"]}},
    "required": ["name", "age", "student", "colour"],
    "additionalProperties": False,
}
SUBJECTS = ["cats", "the sea", "bread", "trains", "Mars", "jazz", "rain", "bees", "castles", "glass", "owls", "tea"]

# kind -> weight
MIX = {
    "chat": 20, "chat_stream": 20, "completion": 8, "completion_stream": 8, "json_schema": 10,
    "n2_logprobs": 6, "disconnect": 12, "malformed": 8,
}


def kv_in_use(url: str, api_key: str | None = None) -> float | None:
    """The KV-blocks-in-use gauge (forge_kv_blocks_used) from /metrics, which needs the API key."""
    req = urllib.request.Request(url + "/metrics", headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            text = r.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    for line in text.splitlines():
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m and not line.startswith("#") and re.search("kv", m.group(1), re.I) and \
                re.search("block", m.group(1), re.I) and re.search("in_use|used", m.group(1), re.I):
            return float(m.group(3))
    return None


class Load:
    def __init__(self, url: str, api_key: str | None, ctx: int, seed: int):
        import openai
        self.openai = openai
        self.url = url
        self.base_url = url + "/v1"
        self.api_key = api_key
        self.client = openai.OpenAI(base_url=self.base_url, api_key=api_key or "unused", max_retries=0, timeout=600)
        self.model = self.client.models.list().data[0].id
        self.ctx = ctx
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.counting = False
        self.outcomes: collections.Counter = collections.Counter()  # (kind, outcome) -> count
        self.unexpected: list[str] = []
        self.stop = threading.Event()

    def record(self, kind: str, outcome: str, ok: bool, detail: str = "") -> None:
        with self.lock:
            if self.counting:
                self.outcomes[(kind, outcome)] += 1
                if not ok:
                    self.unexpected.append(f"{kind}: {outcome} {detail}"[:500])

    def raw_post(self, path: str, body: bytes, content_type: str = "application/json") -> int:
        headers = {"Content-Type": content_type}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.base_url + path, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                r.read()
                return r.status
        except urllib.error.HTTPError as e:
            e.read()
            return e.code

    def one(self, rng: random.Random) -> None:
        kind = rng.choices(list(MIX), weights=list(MIX.values()))[0]
        subject = rng.choice(SUBJECTS)
        msgs = [{"role": "user", "content": f"Tell me something about {subject}."}]
        sampled = dict(temperature=rng.choice([0.0, 0.7, 1.0]), seed=rng.randrange(1 << 30))
        c = self.client
        try:
            if kind == "chat":
                c.chat.completions.create(model=self.model, messages=msgs, max_tokens=rng.randint(4, 64), **sampled)
            elif kind == "chat_stream":
                for _ in c.chat.completions.create(model=self.model, messages=msgs, max_tokens=rng.randint(4, 64),
                                                   stream=True, stream_options={"include_usage": True}, **sampled):
                    pass
            elif kind == "completion":
                c.completions.create(model=self.model, prompt=f"A short note on {subject}:", max_tokens=rng.randint(4, 48),
                                     **sampled)
            elif kind == "completion_stream":
                for _ in c.completions.create(model=self.model, prompt=f"The story of {subject} begins",
                                              max_tokens=rng.randint(4, 48), stream=True, **sampled):
                    pass
            elif kind == "json_schema":
                r = c.chat.completions.create(
                    model=self.model, max_tokens=160, temperature=1.0, seed=rng.randrange(1 << 30),
                    messages=[{"role": "user", "content": f"Describe a person who likes {subject}, as JSON."}],
                    response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA}})
                text = r.choices[0].message.content
                try:
                    json.loads(text)
                except ValueError:
                    if r.choices[0].finish_reason != "length":
                        self.record(kind, "invalid-json", False, repr(text))
                        return
            elif kind == "n2_logprobs":
                c.chat.completions.create(model=self.model, messages=msgs, max_tokens=16, n=2, logprobs=True,
                                          top_logprobs=3, temperature=1.0, seed=rng.randrange(1 << 30))
            elif kind == "disconnect":
                stream = c.chat.completions.create(model=self.model, messages=msgs, max_tokens=256, stream=True,
                                                   **sampled)
                stop_after = rng.randint(0, 8)
                for i, _ in enumerate(stream):
                    if i >= stop_after:
                        break
                stream.close()
            elif kind == "malformed":
                which = rng.randrange(5)
                if which == 0:
                    status = self.raw_post("/chat/completions", b'{"model": "m", "messages": [{"role": ')
                elif which == 1:
                    status = self.raw_post("/chat/completions", json.dumps(
                        {"model": "no-such-model", "messages": msgs, "max_tokens": 4}).encode())
                elif which == 2:
                    status = self.raw_post("/chat/completions", json.dumps(
                        {"model": self.model, "messages": msgs, "max_tokens": self.ctx * 4}).encode())
                elif which == 3:
                    status = self.raw_post("/chat/completions", json.dumps(
                        {"model": self.model, "messages": [{"role": "wizard", "content": 3}]}).encode())
                else:
                    status = self.raw_post("/completions", b"prompt=hello", content_type="application/x-www-form-urlencoded")
                self.record(kind, str(status), 400 <= status < 500)
                return
            self.record(kind, "200", True)
        except self.openai.APIStatusError as e:
            self.record(kind, str(e.status_code), False, e.response.text[:300])
        except self.openai.APIConnectionError as e:
            self.record(kind, "connection-error", False, repr(e))
        except Exception as e:  # noqa: BLE001 - anything else is a finding too
            self.record(kind, type(e).__name__, False, repr(e))

    def worker(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stop.is_set():
            self.one(rng)


def slope_kib_per_min(rows: list[tuple[float, int]]) -> float:
    if len(rows) < 2:
        return float("nan")
    n = len(rows)
    mx = sum(t for t, _ in rows) / n
    my = sum(r for _, r in rows) / n
    sxx = sum((t - mx) ** 2 for t, _ in rows)
    sxy = sum((t - mx) * (r - my) for t, r in rows)
    return sxy / sxx * 60 if sxx else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=600, help="seconds of counted load (default 600)")
    ap.add_argument("--warmup", type=float, default=30, help="seconds of uncounted load first (default 30)")
    ap.add_argument("--workers", type=int, default=6, help="concurrent clients (default 6)")
    ap.add_argument("--backend", "--device", dest="device", default="cpu", help="`forge serve --backend` (default cpu)")
    ap.add_argument("--model")
    ap.add_argument("--max-seqs", type=int, default=4)
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--url", help="a running server (then --pid is needed for RSS)")
    ap.add_argument("--pid", type=int)
    ap.add_argument("--api-key")
    ap.add_argument("--csv", default="soak.csv", help="RSS samples (default soak.csv)")
    ap.add_argument("--json", help="the summary as JSON")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    server = None
    if args.url:
        if not args.pid:
            ap.error("--url needs --pid (the server process, for its RSS)")
        url, pid = args.url.rstrip("/"), args.pid
    else:
        why = missing_prerequisite()
        if why:
            print(f"soak: {why}", file=sys.stderr)
            return 2
        server = ForgeServer(backend=args.device, model=Path(args.model) if args.model else None,
                             api_key=args.api_key, max_seqs=args.max_seqs, ctx=args.ctx,
                             max_queue=max(64, 4 * args.workers))
        url, pid = server.url, server.pid
        print(f"soak: started {' '.join(server.args)} (pid {pid}, log {server.log_path})", file=sys.stderr)

    load = Load(url, args.api_key, args.ctx, args.seed)
    samples: list[dict] = []
    t0 = time.monotonic()
    phase = {"name": "warmup"}
    sampling = threading.Event()

    def sampler() -> None:
        while not sampling.is_set():
            with load.lock:
                done = sum(load.outcomes.values())
                failed = len(load.unexpected)
            samples.append({"t_s": round(time.monotonic() - t0, 2), "phase": phase["name"], "rss_kib": rss_kib(pid),
                            "kv_blocks_in_use": kv_in_use(url, args.api_key), "requests_done": done, "unexpected": failed})
            sampling.wait(1.0)

    threading.Thread(target=sampler, daemon=True).start()
    workers = [threading.Thread(target=load.worker, args=(args.seed * 1000 + i,), daemon=True) for i in range(args.workers)]
    for w in workers:
        w.start()

    time.sleep(args.warmup)
    rss_start = rss_kib(pid)
    with load.lock:
        load.counting = True
    phase["name"] = "load"
    t_load = time.monotonic()
    last_report = t_load
    while time.monotonic() - t_load < args.duration:
        time.sleep(1)
        if server and not server.alive():
            print(f"soak: the server died (exit {server.proc.returncode})", file=sys.stderr)
            break
        if time.monotonic() - last_report >= 60:
            last_report = time.monotonic()
            with load.lock:
                done, bad = sum(load.outcomes.values()), len(load.unexpected)
            print(f"soak: {last_report - t_load:.0f} s: {done} requests, {bad} unexpected, RSS {rss_kib(pid)} KiB",
                  file=sys.stderr)
    load.stop.set()
    phase["name"] = "drain"
    for w in workers:
        w.join(timeout=600)
    with load.lock:
        load.counting = False
    phase["name"] = "idle"
    time.sleep(5)
    rss_end = rss_kib(pid)
    kv_end = kv_in_use(url, args.api_key)
    alive = server.alive() if server else rss_end is not None
    sampling.set()
    time.sleep(1.1)

    with open(args.csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(samples[0]))
        w.writeheader()
        w.writerows(samples)

    loaded = [(s["t_s"], s["rss_kib"]) for s in samples if s["phase"] == "load" and s["rss_kib"] is not None]
    peak = max((s["rss_kib"] for s in samples if s["rss_kib"] is not None), default=None)
    by_kind: dict[str, dict[str, int]] = collections.defaultdict(dict)
    for (kind, outcome), n in sorted(load.outcomes.items()):
        by_kind[kind][outcome] = n
    summary = {
        "duration_s": args.duration, "warmup_s": args.warmup, "workers": args.workers, "device": args.device,
        "requests": sum(load.outcomes.values()), "unexpected": len(load.unexpected), "by_kind": by_kind,
        "rss_start_kib": rss_start, "rss_end_kib": rss_end, "rss_peak_kib": peak,
        "rss_drift_kib": (rss_end - rss_start) if rss_start and rss_end else None,
        "rss_slope_kib_per_min": slope_kib_per_min(loaded),
        "kv_blocks_in_use_at_end": kv_end, "server_alive": alive, "csv": args.csv,
        "unexpected_examples": load.unexpected[:20],
    }
    if server:
        summary["server_exit"] = server.stop()
        summary["server_log"] = str(server.log_path)

    print(f"\nsoak: {args.duration:.0f} s, {args.workers} workers, {args.device}")
    print(f"requests: {summary['requests']} done, {summary['unexpected']} unexpected")
    print("| kind | outcome | count |\n|---|---|---:|")
    for kind, outs in by_kind.items():
        for outcome, n in outs.items():
            print(f"| {kind} | {outcome} | {n} |")
    mib = lambda k: f"{k / 1024:.1f} MiB" if k is not None else "?"  # noqa: E731
    print(f"RSS at start (after {args.warmup:.0f} s warm-up): {mib(rss_start)}; at end (idle): {mib(rss_end)}; "
          f"peak: {mib(peak)}; drift: {mib(summary['rss_drift_kib'])}; "
          f"slope under load: {summary['rss_slope_kib_per_min']:.1f} KiB/min")
    print(f"KV blocks in use once idle: {kv_end}; server alive: {alive}; samples: {args.csv}")
    for ex in summary["unexpected_examples"]:
        print(f"  unexpected: {ex}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    ok = summary["unexpected"] == 0 and alive and (kv_end in (0, None))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
