"""POST /v1/completions: a raw prompt, no chat template."""

from __future__ import annotations

import pytest

from reference import forge_run, llama_cpp_case, llama_cpp_cases, teacher_forced


def test_completion_raw_prompt_greedy(client, model_id, device):
    """Greedy /v1/completions == `forge run --raw --temperature 0`; the model agrees with
    llama.cpp's greedy continuation of the prompt, teacher-forced."""
    case = llama_cpp_case("dev-capital")
    teacher_forced(client, model_id, case)
    n = len(case["greedy_ids"])
    ref = forge_run(case["prompt"], max_tokens=n, device=device, raw=True)

    r = client.completions.create(model=model_id, prompt=case["prompt"], max_tokens=n, temperature=0)
    assert r.object == "text_completion"
    assert len(r.choices) == 1
    c = r.choices[0]
    assert c.index == 0
    assert c.text == ref["text"]
    assert c.text.startswith(" Paris")
    assert c.finish_reason == ref["finish_reason"]
    assert r.usage.completion_tokens == len(ref["ids"])
    assert r.usage.prompt_tokens == len(case["prompt_ids"])
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_completion_streaming_equals_non_streaming(client, model_id):
    kw = dict(model=model_id, prompt="1, 2, 3, 4, 5,", max_tokens=20, temperature=0)
    full = client.completions.create(**kw).choices[0].text
    chunks = list(client.completions.create(**kw, stream=True, stream_options={"include_usage": True}))
    text = "".join(ch.text for c in chunks for ch in c.choices)
    assert text == full
    assert full.startswith(" 6, 7, 8")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 20


def test_completion_stop_and_n(client, model_id):
    r = client.completions.create(model=model_id, prompt="The capital of France is", max_tokens=32,
                                  temperature=0, stop=["\n"])
    assert r.choices[0].text.strip().startswith("Paris")
    assert "\n" not in r.choices[0].text
    assert r.choices[0].finish_reason == "stop"

    r = client.completions.create(model=model_id, prompt="Once upon a time", max_tokens=8, n=2,
                                  temperature=1.0, seed=11)
    assert sorted(c.index for c in r.choices) == [0, 1]


def test_completion_logprobs(client, model_id):
    r = client.completions.create(model=model_id, prompt="The sky is blue because", max_tokens=6,
                                  temperature=0, logprobs=3)
    lp = r.choices[0].logprobs
    assert lp is not None and lp.tokens and len(lp.tokens) == 6
    assert len(lp.token_logprobs) == 6 and all(x <= 0 for x in lp.token_logprobs)
    assert lp.top_logprobs is not None and all(len(t) == 3 for t in lp.top_logprobs)
    assert "".join(lp.tokens) == r.choices[0].text


@pytest.mark.parametrize("case", llama_cpp_cases(), ids=lambda c: c["id"])
def test_echo_logprobs_teacher_forced_against_llama_cpp(client, model_id, case):
    """echo + logprobs + max_tokens 0 (lm-evaluation-harness's log-likelihood request) on llama.cpp's
    prompt and greedy continuation: our most likely token is llama.cpp's at every position, up to a
    near-tie."""
    teacher_forced(client, model_id, case)


def test_echo_returns_the_prompt_and_its_logprobs(client, model_id):
    prompt = "The capital of France is Paris"
    r = client.completions.create(model=model_id, prompt=prompt, echo=True, logprobs=1, max_tokens=0)
    c = r.choices[0]
    assert c.text == prompt and c.finish_reason == "length"
    assert r.usage.completion_tokens == 0
    lp = c.logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == r.usage.prompt_tokens
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert all(x <= 0 for x in lp.token_logprobs[1:])
    assert all(len(t) == 1 and max(t.values()) >= x - 1e-6 for t, x in zip(lp.top_logprobs[1:], lp.token_logprobs[1:]))
    assert "".join(lp.tokens) == prompt
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
    # " Paris" after "The capital of France is" is the model's first choice.
    assert max(lp.top_logprobs[-1], key=lp.top_logprobs[-1].get) == lp.tokens[-1] == " Paris"

    # As lm-evaluation-harness asks: max_tokens 1, the last entry the generated token's.
    r = client.completions.create(model=model_id, prompt=prompt, echo=True, logprobs=1, max_tokens=1, temperature=0)
    c = r.choices[0]
    assert c.text.startswith(prompt) and len(c.text) > len(prompt)
    assert len(c.logprobs.tokens) == r.usage.prompt_tokens + 1
    first, *rest = c.logprobs.token_logprobs[:-1]
    assert first is None and rest == pytest.approx(lp.token_logprobs[1:], abs=1e-4)
    assert c.logprobs.text_offset[-1] == len(prompt)

    # Streamed: the prompt comes first.
    chunks = list(client.completions.create(model=model_id, prompt=prompt, echo=True, max_tokens=4, temperature=0, stream=True))
    assert chunks[0].choices[0].text == prompt
    assert "".join(ch.text for c in chunks for ch in c.choices).startswith(prompt)
