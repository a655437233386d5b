#!/usr/bin/env python3
"""How far llama.cpp moves from its own reference run: the yardstick for the near-tie bound.

The reference tests (tests/src/reference.rs) hold every backend to llama.cpp's recorded greedy
picks, teacher-forced, allowing a different pick only at a near-tie: each side's pick within a
bound of the other side's best logit. That bound is only fair if llama.cpp itself meets it when
its own rounding changes. This script runs the same llama.cpp on the reference's prompts and
continuations in four configurations (flash attention off/on x the continuation in one batch /
one token at a time, as a chat client decodes) and reports, for each, against the reference:

  picks that differ, the worst near-tie (max of the two gaps), the positions behind it, and how
  far its logits sit from the reference's recorded top-3 (mean and largest).

Usage (a llama.cpp build with its shared libraries, e.g. the vendored copy in llama-cpp-python):

    python3 scripts/llama_spread.py --llama-dir path/to/llama.cpp \\
        --model ~/.cache/forge/models/gemma-3-270m-q4_k_m.gguf \\
        --reference tests/fixtures/gemma3-270m-q4_k_m.llama-cpp.json

Needs a C compiler; nothing but the Python standard library.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

CONFIGS = [("fa off, one batch", 0, 0), ("fa on, one batch", 1, 0), ("fa off, token by token", 0, 1), ("fa on, token by token", 1, 1)]


def their_gap(case, i, ours):
    """A lower bound on the reference's best logit minus its logit for `ours` at position i."""
    if i < len(case["top_logits"]):
        top = case["top_logits"][i]
        known = dict((t, l) for t, l in top)
        return top[0][1] - known.get(ours, top[-1][1])
    return case["margins"][i]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-dir", required=True, help="llama.cpp source tree with a build/bin of shared libraries")
    ap.add_argument("--model", required=True)
    ap.add_argument("--reference", required=True, help="a tests/fixtures/*.llama-cpp.json")
    ap.add_argument("--rows", type=int, default=48, help="continuation positions per case")
    args = ap.parse_args()

    ref = json.load(open(args.reference))
    here = os.path.dirname(os.path.abspath(__file__))
    libs = os.path.join(args.llama_dir, "build", "bin")
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "llama_logits")
        subprocess.run(["cc", "-O2", os.path.join(here, "llama_logits.c"), "-I", os.path.join(args.llama_dir, "include"),
                        "-I", os.path.join(args.llama_dir, "ggml", "include"), "-L", libs, "-lllama", f"-Wl,-rpath,{libs}", "-o", exe], check=True)
        cases, lines = [], []
        for c in ref["cases"]:
            rows = min(args.rows, len(c["greedy_ids"]))
            ids = c["prompt_ids"] + c["greedy_ids"][:rows]
            watch = [[t for t, _ in top[:3]] for top in c["top_logits"][:rows]]
            watch = [(w + [-1, -1, -1])[:3] for w in watch] + [[-1, -1, -1]] * (rows - len(watch))
            lines.append(f"{len(c['prompt_ids'])} {len(ids)} {rows}\n{' '.join(map(str, ids))}\n{' '.join(str(t) for w in watch for t in w)}\n")
            cases.append((c, rows))
        stdin = "".join(lines)
        print(f"{os.path.basename(args.model)} against {os.path.basename(args.reference)}, {args.rows} positions per case")
        for name, fa, tokwise in CONFIGS:
            out = subprocess.run([exe, args.model, str(fa), str(tokwise)], input=stdin, capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"{name}: llama_logits failed ({out.returncode}): {out.stderr[-2000:]}")
            rows_out = iter(out.stdout.split("\n"))
            flips, worst, worst_at, diffs = 0, 0.0, "", []
            for c, rows in cases:
                for i in range(rows):
                    f = next(rows_out).split()
                    ours, best, theirs_logit = int(f[0]), float(f[1]), float(f[2])
                    for (t, l), got in zip(c["top_logits"][i][:3] if i < len(c["top_logits"]) else [], f[3:6]):
                        diffs.append(abs(float(got) - l))
                    if ours == c["greedy_ids"][i]:
                        continue
                    flips += 1
                    gap = max(best - theirs_logit, their_gap(c, i, ours))
                    if gap > worst:
                        worst, worst_at = gap, f"{c['id']} position {i}: the reference's pick {best - theirs_logit:.3f} below ours, ours {their_gap(c, i, ours):.3f} below theirs"
            mean = sum(diffs) / max(len(diffs), 1)
            print(f"  {name:24} {flips:3} picks differ; worst near-tie {worst:.3f} ({worst_at or '-'}); "
                  f"top-3 logits {mean:.3f} from the reference's on average, {max(diffs, default=0):.3f} at most")


if __name__ == "__main__":
    main()
