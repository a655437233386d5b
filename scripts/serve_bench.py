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

Options: --concurrency 1,4,16  --max-tokens 64  --rounds 3  --max-seqs (default: the largest
level)  --ctx 2048  --model PATH  --json PATH (the table's numbers and every request's timings)
--markdown PATH.
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
from forge_server import ForgeServer, missing_prerequisite  # noqa: E402

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


async def main_async(args) -> int:
    import openai

    levels_wanted = [int(x) for x in args.concurrency.split(",")]
    server = None
    if args.url:
        url = args.url.rstrip("/")
        base_url = url if url.endswith("/v1") else url + "/v1"
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
        client = openai.AsyncOpenAI(base_url=base_url, api_key=args.api_key or "unused", max_retries=0, timeout=1800)
        model = (await client.models.list()).data[0].id
        # Warm-up: the first request pays for plan/pipeline creation.
        await one_request(client, model, "Hello", 8)
        levels = []
        for c in levels_wanted:
            lv = await run_level(client, model, c, args.rounds, args.max_tokens)
            print(f"serve_bench: C={c}: {lv['tokens']} tokens in {lv['wall_s']:.1f} s, "
                  f"{lv['agg_tok_s']:.1f} tok/s aggregate", file=sys.stderr)
            levels.append(lv)
        await client.close()
    finally:
        if server:
            server.stop()
    meta = {"device": device, "model": model, "rounds": args.rounds, "max_tokens": args.max_tokens, "url": base_url}
    table = markdown(levels, meta)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "levels": levels}, indent=1))
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
    ap.add_argument("--json", help="write the numbers (and each request's timings) here")
    ap.add_argument("--markdown", help="write the table here too")
    return asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
