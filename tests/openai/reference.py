"""What the server's answers are compared with: `forge run --json` (the same engine without the
server) and llama.cpp's greedy reference in tests/fixtures, by the rule of tests/src/reference.rs.

Teacher-forced: the server scores llama.cpp's prompt and greedy continuation as one prompt
(`echo` with `logprobs`, `max_tokens` 0), so every position is compared with llama.cpp's pick at
the same context, whatever came before. Our most likely token must be llama.cpp's, except at a
near-tie: each side's pick lies within NEAR_TIE of the other side's best logit (a difference of
log-probabilities is the same difference of logits)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from forge_server import REPO, forge_bin, smollm2_path

FIXTURE = REPO / "tests" / "fixtures" / "smollm2-135m-q4_1.llama-cpp.json"

# Two picks within this many logits of each other's best are a near-tie (tests/src/reference.rs).
NEAR_TIE = 0.4


def llama_cpp_cases() -> list[dict]:
    return json.loads(Path(FIXTURE).read_text())["cases"]


def llama_cpp_case(case_id: str) -> dict:
    return next(c for c in llama_cpp_cases() if c["id"] == case_id)


def their_gap(case: dict, i: int, token: int) -> float:
    """A lower bound on llama.cpp's best logit minus its logit for `token` at continuation
    position i: from its recorded top 10 where there is one (below the 10th if not in it), else
    its top-1 minus top-2 margin."""
    if token == case["greedy_ids"][i]:
        return 0.0
    if i < len(case["top_logits"]):
        top = case["top_logits"][i]
        logit = next((l for t, l in top if t == token), None)
        return top[0][1] - (logit if logit is not None else top[-1][1])
    return case["margins"][i] if i < len(case["margins"]) else float("inf")


def token_id(token: str) -> int:
    assert token.startswith("token_id:"), f"{token!r}: ask with return_tokens_as_token_ids"
    return int(token.removeprefix("token_id:"))


def check_teacher_forced(case: dict, logprobs) -> int:
    """`logprobs`: a completion's legacy log-probabilities for llama.cpp's prompt ids followed by
    its greedy ids, with echo, logprobs >= 1 and return_tokens_as_token_ids. Applies the rule at
    every continuation position; returns the near-ties (where the picks may differ)."""
    p = len(case["prompt_ids"])
    ids = [token_id(t) for t in logprobs.tokens]
    assert ids == case["prompt_ids"] + case["greedy_ids"], f"{case['id']}: the echoed tokens are not the input"
    assert logprobs.token_logprobs[0] is None and logprobs.top_logprobs[0] is None
    near_ties, errors = 0, []
    for i, theirs in enumerate(case["greedy_ids"]):
        top = logprobs.top_logprobs[p + i]
        best, best_lp = max(top.items(), key=lambda kv: kv[1])
        ours = token_id(best)
        if ours == theirs:
            continue
        our_gap = best_lp - logprobs.token_logprobs[p + i]
        gap = their_gap(case, i, ours)
        if our_gap <= NEAR_TIE and gap <= NEAR_TIE:
            near_ties += 1
        else:
            errors.append(f"{case['id']} position {i}: we pick {ours}, llama.cpp picks {theirs}; their pick is "
                          f"{our_gap:.3f} below our best, ours at least {gap:.3f} below theirs (near-tie: both within {NEAR_TIE})")
    assert not errors, "\n".join(errors)
    return near_ties


def teacher_forced(client, model_id: str, case: dict) -> int:
    """The server scores llama.cpp's prompt and continuation; checked by check_teacher_forced."""
    r = client.completions.create(model=model_id, prompt=case["prompt_ids"] + case["greedy_ids"], echo=True,
                                  logprobs=1, max_tokens=0, temperature=0,
                                  extra_body={"return_tokens_as_token_ids": True})
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 0
    return check_teacher_forced(case, r.choices[0].logprobs)


def forge_run(prompt: str, *, max_tokens: int, device: str, raw: bool = False, system: str | None = None,
              stop: list[str] | None = None) -> dict:
    """Greedy `forge run --json` on the same model and backend as the server: {text, ids, finish_reason, ...}."""
    args = [str(forge_bin()), "run", "--model", str(smollm2_path()), "--backend", device, "--no-fallback",
            "--temperature", "0", "-n", str(max_tokens), "--json", "--prompt", prompt]
    if raw:
        args.append("--raw")
    if system is not None:
        args += ["--system", system]
    for s in stop or []:
        args += ["--stop", s]
    out = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"`{' '.join(args)}` failed ({out.returncode}):\n{out.stderr[-2000:]}"
    return json.loads(out.stdout)
