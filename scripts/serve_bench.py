#!/usr/bin/env python3
"""Throughput benchmark for `forge serve`: concurrent streaming chat requests, level by level.

For each concurrency level C (default 1, 4, 16) it runs `--rounds` rounds; a round starts C
streaming chat completions at once (temperature 0, `--max-tokens` each, a different prompt per
client) and waits for all of them. Reported per level:

  agg tok/s       generated tokens of all rounds / the rounds' wall time
  stream tok/s    per request, (tokens - 1) / (last token - first token): the decode rate one
                  client sees; mean over requests
  TTFT p50/90/99  request sent -> first content chunk, ms
  ITL p50/90      gap between consecutive content chunks, ms (all requests pooled)

Token counts come from the final usage chunk (`stream_options={"include_usage": true}`), so a
request that stops early at end-of-sequence counts what it really generated.

Usage (needs the packages in tests/openai/requirements.txt):

    python -m venv .venv && .venv/bin/pip install -r tests/openai/requirements.txt
    cargo build --release -p forge
    # start a server (target/release/forge, the default model) and benchmark it:
    .venv/bin/python scripts/serve_bench.py --backend cpu
    .venv/bin/python scripts/serve_bench.py --backend wgpu --max-tokens 32 --rounds 2 --json wgpu.json
    # or benchmark a server that is already running:
    .venv/bin/python scripts/serve_bench.py --url http://127.0.0.1:8080 --api-key K
    # side by side with llama.cpp's server on the same model, one after the other:
    .venv/bin/python scripts/serve_bench.py --compare-llama-server path/to/llama-server --peer-threads 2
    .venv/bin/python scripts/serve_bench.py --compare-url http://127.0.0.1:8081

Options: --concurrency 1,4,16  --max-tokens 64  --rounds 3  --max-seqs (default: the largest
level)  --ctx 2048  --model PATH  --json PATH (the table's numbers and every request's timings)
--markdown PATH  --compare-url URL  --compare-llama-server BINARY  --peer-threads N.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "openai"))
from forge_server import ForgeServer, free_port, missing_prerequisite, stop_process, wait_healthy  # noqa: E402

TOPICS = ["the ocean", "a lighthouse keeper", "the history of bread", "a robot learning to paint", "volcanoes",
          "a city at night", "the first snowfall", "an old library", "migrating birds", "a chess tournament",
          "the moon landing", "a mountain village", "honeybees", "a train journey", "desert stars", "rainforests",
          "a lost key", "the invention of paper", "a jazz club", "glaciers"]


def prompt_for(client: int, round_: int) -> str:
    topic = TOPICS[(client + 7 * round_) % len(TOPICS)]
    return f"Write a long, detailed story about {topic}. Story #{client + 1}.{round_ + 1}:"


def percentile(xs: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN for no data."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = (len(s) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


async def one_request(client, model: str, prompt: str, max_tokens: int) -> dict:
    t0 = time.perf_counter()
    chunk_times: list[float] = []
    usage = None
    finish = None
    stream = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens, temperature=0,
        stream=True, stream_options={"include_usage": True})
    async for chunk in stream:
        now = time.perf_counter()
        if chunk.usage is not None:
            usage = chunk.usage
        for ch in chunk.choices:
            if ch.delta.content:
                chunk_times.append(now)
            if ch.finish_reason:
                finish = ch.finish_reason
    t_end = time.perf_counter()
    tokens = usage.completion_tokens if usage else len(chunk_times)
    first = chunk_times[0] if chunk_times else None
    return {
        "tokens": tokens,
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "finish_reason": finish,
        "ttft_s": (first - t0) if first is not None else None,
        "total_s": t_end - t0,
        "decode_tok_s": (tokens - 1) / (chunk_times[-1] - first) if tokens > 1 and chunk_times[-1] > first else None,
        "itl_s": [b - a for a, b in zip(chunk_times, chunk_times[1:])],
    }


async def run_level(client, model: str, concurrency: int, rounds: int, max_tokens: int) -> dict:
    requests: list[dict] = []
    wall = 0.0
    for r in range(rounds):
        t0 = time.perf_counter()
        results = await asyncio.gather(*(one_request(client, model, prompt_for(c, r), max_tokens)
                                         for c in range(concurrency)))
        wall += time.perf_counter() - t0
        requests += results
    tokens = sum(q["tokens"] for q in requests)
    ttft = [q["ttft_s"] * 1e3 for q in requests if q["ttft_s"] is not None]
    itl = [x * 1e3 for q in requests for x in q["itl_s"]]
    rates = [q["decode_tok_s"] for q in requests if q["decode_tok_s"]]
    return {
        "concurrency": concurrency,
        "requests": len(requests),
        "tokens": tokens,
        "wall_s": wall,
        "agg_tok_s": tokens / wall if wall else float("nan"),
        "stream_tok_s": statistics.mean(rates) if rates else float("nan"),
        "ttft_ms": {p: percentile(ttft, p) for p in (50, 90, 99)},
        "itl_ms": {p: percentile(itl, p) for p in (50, 90)},
        "finish_reasons": {f: sum(q["finish_reason"] == f for q in requests)
                           for f in sorted({str(q["finish_reason"]) for q in requests})},
        "per_request": [{k: v for k, v in q.items() if k != "itl_s"} for q in requests],
    }


def markdown(levels: list[dict], meta: dict) -> str:
    lines = [
        f"`forge serve` on {meta['device']}, {meta['model']}: {meta['rounds']} rounds x C streaming chat requests, "
        f"max_tokens {meta['max_tokens']}, temperature 0",
        "",
        "| C | requests | tokens | agg tok/s | stream tok/s | TTFT p50 ms | TTFT p90 ms | TTFT p99 ms | ITL p50 ms | ITL p90 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for lv in levels:
        t, i = lv["ttft_ms"], lv["itl_ms"]
        lines.append(f"| {lv['concurrency']} | {lv['requests']} | {lv['tokens']} | {lv['agg_tok_s']:.1f} | "
                     f"{lv['stream_tok_s']:.1f} | {t[50]:.0f} | {t[90]:.0f} | {t[99]:.0f} | {i[50]:.1f} | {i[90]:.1f} |")
    return "\n".join(lines)


async def sweep(base_url: str, api_key: str | None, levels_wanted: list[int], rounds: int, max_tokens: int,
                label: str) -> tuple[str, list[dict]]:
    """Every concurrency level against one server: (its model id, the levels' numbers)."""
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key or "unused", max_retries=0, timeout=1800)
    try:
        model = (await client.models.list()).data[0].id
        # Warm-up: the first request pays for plan/pipeline creation.
        await one_request(client, model, "Hello", 8)
        levels = []
        for c in levels_wanted:
            lv = await run_level(client, model, c, rounds, max_tokens)
            print(f"serve_bench: {label} C={c}: {lv['tokens']} tokens in {lv['wall_s']:.1f} s, "
                  f"{lv['agg_tok_s']:.1f} tok/s aggregate, TTFT p50 {lv['ttft_ms'][50]:.0f} ms", file=sys.stderr)
            levels.append(lv)
    finally:
        await client.close()
    return model, levels


def v1(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


class LlamaServer:
    """llama.cpp's `llama-server` on a free port, for `--compare-llama-server`: `-np` slots as many as
    the largest level, each with `--ctx` tokens, `--threads` as given."""

    def __init__(self, binary: str, model: Path, slots: int, ctx: int, threads: int | None):
        import subprocess
        import tempfile

        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.args = [binary, "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-np", str(slots),
                     "-c", str(ctx * slots), "--no-webui"]
        if threads:
            self.args += ["-t", str(threads), "-tb", str(threads)]
        self.log_path = Path(tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])
        self.proc = subprocess.Popen(self.args, stdout=self.log_path.open("w"), stderr=subprocess.STDOUT)
        wait_healthy(self.proc, self.url, 120, "llama-server", lambda: "\n".join(self.log_path.read_text(errors="replace").splitlines()[-40:]))

    def stop(self) -> None:
        stop_process(self.proc, 20)


def comparison(ours: list[dict], theirs: list[dict], meta: dict) -> str:
    lines = [
        f"`forge serve` ({meta['device']}) against {meta['peer']}, {meta['model']}: {meta['rounds']} rounds x C "
        f"streaming chat requests, max_tokens {meta['max_tokens']}, temperature 0, same client",
        "",
        "| C | Forge agg tok/s | peer agg tok/s | ratio | Forge TTFT p50 ms | peer TTFT p50 ms | Forge stream tok/s | peer stream tok/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for a, b in zip(ours, theirs):
        lines.append(f"| {a['concurrency']} | {a['agg_tok_s']:.1f} | {b['agg_tok_s']:.1f} | "
                     f"{a['agg_tok_s'] / b['agg_tok_s']:.2f}x | {a['ttft_ms'][50]:.0f} | {b['ttft_ms'][50]:.0f} | "
                     f"{a['stream_tok_s']:.1f} | {b['stream_tok_s']:.1f} |")
    return "\n".join(lines)


async def main_async(args) -> int:
    levels_wanted = [int(x) for x in args.concurrency.split(",")]
    server = None
    if args.url:
        base_url = v1(args.url)
        device = args.device or "?"
    else:
        why = missing_prerequisite()
        if why:
            print(f"serve_bench: {why}", file=sys.stderr)
            return 2
        device = args.device or "cpu"
        server = ForgeServer(backend=device, model=Path(args.model) if args.model else None, api_key=args.api_key,
                             max_seqs=args.max_seqs or max(levels_wanted), ctx=args.ctx,
                             max_queue=max(64, 2 * max(levels_wanted)))
        base_url = server.base_url
        print(f"serve_bench: started {' '.join(server.args)} at {server.url} (log {server.log_path})", file=sys.stderr)
    try:
        model, levels = await sweep(base_url, args.api_key, levels_wanted, args.rounds, args.max_tokens, "forge")
    finally:
        if server:
            model_path = server.model
            server.stop()
    meta = {"device": device, "model": model, "rounds": args.rounds, "max_tokens": args.max_tokens, "url": base_url}
    table = markdown(levels, meta)
    out: dict = {"meta": meta, "levels": levels}

    # The peer runs after Forge's server has stopped, so the two never share the cores.
    peer = None
    if args.compare_llama_server:
        if args.url and not args.model:
            print("serve_bench: --compare-llama-server with --url needs --model (the GGUF for llama-server)",
                  file=sys.stderr)
            return 2
        gguf = Path(args.model) if args.model else model_path
        peer = LlamaServer(args.compare_llama_server, gguf, args.max_seqs or max(levels_wanted), args.ctx,
                           args.peer_threads)
        print(f"serve_bench: started {' '.join(peer.args)} (log {peer.log_path})", file=sys.stderr)
        peer_url, peer_name = v1(peer.url), "llama-server"
    elif args.compare_url:
        peer_url, peer_name = v1(args.compare_url), args.compare_url
    if peer is not None or args.compare_url:
        try:
            _, theirs = await sweep(peer_url, args.compare_api_key, levels_wanted, args.rounds, args.max_tokens,
                                    "peer")
        finally:
            if peer:
                peer.stop()
        meta["peer"] = peer_name
        out["peer_levels"] = theirs
        table += "\n\n" + comparison(levels, theirs, meta)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="benchmark a running server (http://HOST:PORT) instead of starting one")
    ap.add_argument("--backend", "--device", dest="device",
                    help="cpu or wgpu: `forge serve --backend` for the server started here (default cpu)")
    ap.add_argument("--model", help="model file (default: SmolLM2-135M-Instruct Q4_1 from the model cache)")
    ap.add_argument("--api-key")
    ap.add_argument("--concurrency", default="1,4,16", help="comma-separated levels (default 1,4,16)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-seqs", type=int, help="server --max-seqs (default: the largest level)")
    ap.add_argument("--ctx", type=int, default=2048, help="server --ctx (default 2048)")
    ap.add_argument("--compare-url", help="also benchmark this running OpenAI-compatible server (e.g. llama-server) "
                    "with the same client and prompts, after Forge's, and print the ratios")
    ap.add_argument("--compare-api-key", help="API key for --compare-url")
    ap.add_argument("--compare-llama-server", metavar="BINARY",
                    help="start this llama-server binary on the same model (-np as --max-seqs, -c ctx per slot) "
                    "after Forge's server has stopped, benchmark it the same way and print the ratios")
    ap.add_argument("--peer-threads", type=int, help="llama-server -t/-tb (default: its own choice)")
    ap.add_argument("--json", help="write the numbers (and each request's timings) here")
    ap.add_argument("--markdown", help="write the table here too")
    return asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
