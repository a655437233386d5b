"""What the server's answers are compared with: `forge run --json` (the same engine without the
server) and llama.cpp's greedy reference in tests/fixtures (tests/src/lib.rs `check_greedy`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from forge_server import REPO, forge_bin, smollm2_path

FIXTURE = REPO / "tests" / "fixtures" / "smollm2-135m-q4_1.llama-cpp.json"

# Below this top-2 margin llama.cpp's own choice is a near-tie that rounding may flip
# (tests/src/lib.rs NEAR_TIE).
NEAR_TIE = 0.25


def llama_cpp_case(case_id: str) -> dict:
    cases = json.loads(Path(FIXTURE).read_text())["cases"]
    return next(c for c in cases if c["id"] == case_id)


def check_greedy(case: dict, ids: list[int]) -> int:
    """Generated ids against llama.cpp's greedy ids: equal up to the first difference, which is
    accepted only at a near-tie (nothing after it is compared). Returns the positions matched."""
    for i, (ours, theirs) in enumerate(zip(ids, case["greedy_ids"])):
        if ours != theirs:
            margin = case["margins"][i] if i < len(case["margins"]) else float("inf")
            assert margin < NEAR_TIE, (
                f"{case['id']}: position {i}: got id {ours}, llama.cpp chose {theirs} with a clear margin of "
                f"{margin:.3f} (ours so far {ids[:i + 1]}, theirs {case['greedy_ids'][:i + 1]})")
            return i
    return min(len(ids), len(case["greedy_ids"]))


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
