"""POST /v1/completions: a raw prompt, no chat template."""

from __future__ import annotations

from reference import check_greedy, forge_run, llama_cpp_case


def test_completion_raw_prompt_greedy(client, model_id, device):
    """Greedy /v1/completions == `forge run --raw --temperature 0`, which follows llama.cpp."""
    case = llama_cpp_case("dev-capital")
    n = len(case["greedy_ids"])
    ref = forge_run(case["prompt"], max_tokens=n, device=device, raw=True)
    assert check_greedy(case, ref["ids"]) >= 8

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
