"""The server itself: /health, /metrics, concurrent requests, and KV blocks given back."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

from reference import NEAR_TIE


def kv_blocks_in_use(metrics: str) -> float:
    """The KV-blocks-in-use gauge from the Prometheus text (any metric whose name says kv, block(s)
    and in-use/used)."""
    for line in metrics.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m and re.search(r"kv", m.group(1), re.I) and re.search(r"block", m.group(1), re.I) \
                and re.search(r"in_use|used", m.group(1), re.I):
            return float(m.group(3))
    raise AssertionError(f"no KV-blocks-in-use gauge in /metrics:\n{metrics[:3000]}")


def test_health(server):
    status, _ = server.get("/health")
    assert status == 200


def test_metrics_prometheus(server, client, model_id):
    client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    status, text = server.get("/metrics")
    assert status == 200
    assert "# TYPE" in text
    kv_blocks_in_use(text)


def test_concurrent_greedy_requests_agree_with_sequential(client, model_id):
    """More requests than --max-seqs at once, each with its own prompt: every answer equals the
    same request run alone, up to a near-tie (a batch may round differently from a single row;
    where the two top logprobs of the lone run are within NEAR_TIE the continuations may part)."""
    prompts = [f"Write one sentence about the number {i}." for i in range(6)]

    def ask(p: str):
        r = client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": p}],
                                           max_tokens=24, temperature=0, logprobs=True, top_logprobs=2)
        return r.choices[0].logprobs.content

    alone = [ask(p) for p in prompts]
    with ThreadPoolExecutor(len(prompts)) as pool:
        together = list(pool.map(ask, prompts))
    for p, a, t in zip(prompts, alone, together):
        for i, (x, y) in enumerate(zip(a, t)):
            if x.token != y.token:
                margin = x.top_logprobs[0].logprob - x.top_logprobs[1].logprob
                assert margin < NEAR_TIE, (
                    f"{p!r}: token {i}: alone {x.token!r}, in a batch {y.token!r}, with a clear margin of "
                    f"{margin:.3f}: {''.join(z.token for z in a)!r} vs {''.join(z.token for z in t)!r}")
                break
        else:
            assert len(a) == len(t)


def test_disconnect_mid_stream_frees_kv(server, client, model_id):
    """A client that walks away mid-stream: the server carries on, and once idle no KV block is in use."""
    stream = client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "Tell a long story."}],
                                            max_tokens=400, stream=True)
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    r = client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    assert r.choices[0].message.content is not None
    deadline = time.monotonic() + 30
    while True:
        used = kv_blocks_in_use(server.get("/metrics")[1])
        if used == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert used == 0, f"{used} KV blocks still in use with no request running"
