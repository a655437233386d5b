"""POST /v1/chat/completions through the official client: plain, greedy against the references,
streaming, n, logprobs, stop, seed."""

from __future__ import annotations

import math

import pytest

from reference import forge_run, llama_cpp_case, teacher_forced

MOUNTAIN = "What is the tallest mountain on Earth?"  # llama.cpp reference case dev-chat-hello


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_chat_completion_basic(client, model_id):
    r = client.chat.completions.create(model=model_id, messages=user("Say hello."), max_tokens=16)
    assert r.object == "chat.completion"
    assert r.id
    assert r.model
    assert len(r.choices) == 1
    c = r.choices[0]
    assert c.index == 0
    assert c.message.role == "assistant"
    assert isinstance(c.message.content, str) and c.message.content.strip()
    assert c.finish_reason in ("stop", "length")
    u = r.usage
    assert u is not None
    assert u.prompt_tokens > 0
    assert 0 < u.completion_tokens <= 16
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    if c.finish_reason == "length":
        assert u.completion_tokens == 16


def test_max_tokens_gives_finish_reason_length(client, model_id):
    r = client.chat.completions.create(model=model_id, messages=user(MOUNTAIN), max_tokens=5, temperature=0)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 5


def test_greedy_chat_matches_forge_run_and_llama_cpp(client, model_id, device):
    """temperature=0 through the server == `forge run --temperature 0` for the same messages and
    max_tokens; and on llama.cpp's templated prompt and greedy answer, teacher-forced, the model
    picks llama.cpp's token at every position (up to a near-tie)."""
    case = llama_cpp_case("dev-chat-hello")
    assert case["prompt"] == MOUNTAIN
    teacher_forced(client, model_id, case)
    n = len(case["greedy_ids"])
    ref = forge_run(MOUNTAIN, max_tokens=n, device=device)

    r = client.chat.completions.create(model=model_id, messages=user(MOUNTAIN), max_tokens=n, temperature=0)
    assert r.choices[0].message.content == ref["text"]
    assert r.usage.completion_tokens == len(ref["ids"])
    assert r.choices[0].finish_reason == ref["finish_reason"]


def test_greedy_chat_with_system_message_matches_forge_run(client, model_id, device):
    system = "You are a terse assistant. Answer in one sentence."
    ref = forge_run("Why is the sea salty?", max_tokens=32, device=device, system=system)
    r = client.chat.completions.create(
        model=model_id, max_tokens=32, temperature=0,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": "Why is the sea salty?"}])
    assert r.choices[0].message.content == ref["text"]


def test_greedy_is_repeatable(client, model_id):
    kw = dict(model=model_id, messages=user("Name three colours."), max_tokens=24, temperature=0)
    a = client.chat.completions.create(**kw).choices[0].message.content
    b = client.chat.completions.create(**kw).choices[0].message.content
    assert a == b


def test_streaming_equals_non_streaming(client, model_id):
    kw = dict(model=model_id, messages=user(MOUNTAIN), max_tokens=40, temperature=0)
    full = client.chat.completions.create(**kw)
    chunks = list(client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True}))
    assert chunks, "no chunks"
    ids = {c.id for c in chunks}
    assert len(ids) == 1, f"chunks carry different ids: {ids}"
    assert all(c.object == "chat.completion.chunk" for c in chunks)

    content_chunks = [c for c in chunks if c.choices]
    text = "".join(c.choices[0].delta.content or "" for c in content_chunks)
    assert text == full.choices[0].message.content
    roles = [c.choices[0].delta.role for c in content_chunks if c.choices[0].delta.role]
    assert roles and roles[0] == "assistant"
    finish = [c.choices[0].finish_reason for c in content_chunks if c.choices[0].finish_reason]
    assert finish == [full.choices[0].finish_reason], f"finish_reason in the stream: {finish}"

    # include_usage: the last chunk carries usage (and, as OpenAI does, no choices); the others none.
    last = chunks[-1]
    assert last.usage is not None, "last chunk has no usage"
    assert last.choices == []
    assert last.usage.completion_tokens == full.usage.completion_tokens
    assert last.usage.prompt_tokens == full.usage.prompt_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_streaming_without_usage(client, model_id):
    chunks = list(client.chat.completions.create(model=model_id, messages=user("Hi"), max_tokens=8, stream=True))
    assert chunks and all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_n_two_choices(client, model_id):
    r = client.chat.completions.create(model=model_id, messages=user("Tell me a fact about cats."), max_tokens=16,
                                       n=2, temperature=1.0, seed=7)
    assert sorted(c.index for c in r.choices) == [0, 1]
    for c in r.choices:
        assert isinstance(c.message.content, str)
        assert c.finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 2 * 16


def test_n_two_streaming(client, model_id):
    chunks = list(client.chat.completions.create(model=model_id, messages=user("Tell me a fact about dogs."),
                                                 max_tokens=12, n=2, temperature=1.0, seed=3, stream=True))
    indices = {ch.index for c in chunks for ch in c.choices}
    assert indices == {0, 1}
    for i in (0, 1):
        finishes = [ch.finish_reason for c in chunks for ch in c.choices if ch.index == i and ch.finish_reason]
        assert len(finishes) == 1, f"choice {i}: finish_reasons {finishes}"


def test_logprobs(client, model_id):
    r = client.chat.completions.create(model=model_id, messages=user(MOUNTAIN), max_tokens=12, temperature=0,
                                       logprobs=True, top_logprobs=3)
    c = r.choices[0]
    assert c.logprobs is not None and c.logprobs.content, "no logprobs.content"
    content = c.logprobs.content
    assert len(content) == r.usage.completion_tokens
    assert "".join(t.token for t in content) == c.message.content
    for t in content:
        assert t.logprob <= 0.0 and math.isfinite(t.logprob), t
        assert len(t.top_logprobs) == 3, t
        tops = [a.logprob for a in t.top_logprobs]
        assert all(x <= 0.0 for x in tops)
        assert tops == sorted(tops, reverse=True), f"top_logprobs not in descending order: {tops}"
        # Greedy: the chosen token is the most likely one.
        assert t.top_logprobs[0].token == t.token
        assert t.logprob == pytest.approx(tops[0], abs=1e-4)
        if t.bytes is not None:  # ASCII answer: the bytes spell the token
            assert bytes(t.bytes).decode("utf-8") == t.token


def test_logprobs_streaming(client, model_id):
    chunks = list(client.chat.completions.create(model=model_id, messages=user(MOUNTAIN), max_tokens=6,
                                                 temperature=0, logprobs=True, top_logprobs=2, stream=True))
    entries = [t for c in chunks for ch in c.choices if ch.logprobs and ch.logprobs.content for t in ch.logprobs.content]
    assert len(entries) == 6
    assert all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in entries)


def test_stop_newline(client, model_id):
    msgs = user("Write a short poem about the sea, four lines, one per line.")
    free = client.chat.completions.create(model=model_id, messages=msgs, max_tokens=64, temperature=0)
    assert "\n" in free.choices[0].message.content, "the reference answer has no newline: pick another prompt"
    r = client.chat.completions.create(model=model_id, messages=msgs, max_tokens=64, temperature=0, stop=["\n"])
    text = r.choices[0].message.content
    assert "\n" not in text
    assert r.choices[0].finish_reason == "stop"
    # The stop string is cut off, not the text before it.
    assert free.choices[0].message.content.startswith(text)
    assert free.choices[0].message.content[len(text)] == "\n"


def test_stop_streaming(client, model_id):
    msgs = user("Write a short poem about the sea, four lines, one per line.")
    chunks = list(client.chat.completions.create(model=model_id, messages=msgs, max_tokens=64, temperature=0,
                                                 stop="\n", stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "\n" not in text and text
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_seed_reproducible(client, model_id):
    kw = dict(model=model_id, messages=user("Invent a name for a dragon."), max_tokens=16, temperature=1.0)
    a = client.chat.completions.create(**kw, seed=1234).choices[0].message.content
    b = client.chat.completions.create(**kw, seed=1234).choices[0].message.content
    assert a == b
    others = {client.chat.completions.create(**kw, seed=s).choices[0].message.content for s in (1, 2, 3)}
    assert len(others | {a}) > 1, "four seeds at temperature 1 gave the same text"


def test_multi_turn(client, model_id):
    r = client.chat.completions.create(model=model_id, max_tokens=16, temperature=0, messages=[
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Nice to meet you, Ada."},
        {"role": "user", "content": "What is my name?"},
    ])
    assert r.choices[0].message.content
    assert r.usage.prompt_tokens > 20
