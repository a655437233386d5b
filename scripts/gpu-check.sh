#!/usr/bin/env bash
# Every check of Forge that needs an NVIDIA GPU, in one command, within 8 minutes of wall time
# (sized for a 16-core machine with an H200):
#   tools → build (or prebuilt binaries) → detect the GPU → CUDA kernel tests → greedy end to end
#   on CUDA with CUDA graphs on and off → greedy end to end on wgpu (the NVIDIA Vulkan driver) →
#   forge bench (cuda, wgpu) → compute-sanitizer memcheck on the kernel tests → one report.
# The steps before the GPU check need no GPU, so a machine without one (CI) runs exactly those and
# stops with exit 3. A failing step is recorded and the next one runs; every step has a timeout
# and the whole run a budget.
#
# Usage: scripts/gpu-check.sh [REPORT_DIR]         run the checks (from any folder)
#        scripts/gpu-check.sh --pack [REPORT_DIR]  build, then put stripped test binaries and a
#                     manifest in target/gpu-check/bin (about 75 MB), and the same folder in
#                     target/gpu-check/bin.tar.gz (about 30 MB), for a machine without Rust: copy
#                     either there (the archive is unpacked when newer than the folder); exits 0
# REPORT_DIR: where report.md, logs.txt, bench.json and bench.md go; default $OUT when set (the
# device tool's folder), else ./gpu-check-report.
#
# Exit codes:
#   0  every step ran and passed
#   1  a step failed or ran out of time (report.md says which)
#   2  cannot start: a bad argument, or neither cargo nor prebuilt binaries (target/gpu-check)
#   3  no NVIDIA GPU: the steps that need none ran (tools, build); nothing else did
#   4  every step that ran passed, but some could not run here: the model is absent, or
#      compute-sanitizer refuses the device (report.md says which and why)
#
# Environment:
#   FORGE_MODEL_DIR     where SmolLM2-135M-Instruct.Q4_1.gguf is; default: ./models in the
#                       repository when it holds the file, else forge's cache (~/.cache/forge/models)
#   GPU_CHECK_PREBUILT=1  never run cargo: use target/gpu-check/bin (from --pack), else
#                       target/gpu-check/manifest (from the last build); automatic without cargo
#   GPU_CHECK_MANIFEST  with GPU_CHECK_PREBUILT=1: this manifest instead (lines `NAME PATH`, and
#                       `root DIR`, the folder the binaries were built in); the script's tests use it
#   GPU_CHECK_BUDGET_S  the whole run's wall-time budget in seconds (default 470)
#
# Prebuilt test binaries open tests/fixtures by the absolute path they were built in (Cargo's
# CARGO_MANIFEST_DIR); where that path does not exist here, it is made a symbolic link to this
# repository (the report says so).
set -uo pipefail

MODEL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
# The test binaries this script runs, by Cargo target name.
TEST_BINS=(forge_engine greedy_cuda rope_scaling devices greedy_wgpu)
NO_GPU_EXIT=3

cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
START=$SECONDS
BUDGET=${GPU_CHECK_BUDGET_S:-470}

pack=0 report_arg=""
for arg in "$@"; do
  case $arg in
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --pack) pack=1 ;;
    -*) echo "gpu-check: unknown option $arg (see --help)" >&2; exit 2 ;;
    *) [ -z "$report_arg" ] || { echo "gpu-check: one REPORT_DIR at most (see --help)" >&2; exit 2; }
       report_arg=$arg ;;
  esac
done
report_dir=${report_arg:-${OUT:-./gpu-check-report}}
# Packing happens where Rust is, on no clock: a build from scratch may take its time.
build_limit=300
if [ "$pack" = 1 ]; then
  build_limit=3600
  BUDGET=${GPU_CHECK_BUDGET_S:-4000}
fi
[[ $BUDGET =~ ^[0-9]+$ ]] || { echo "gpu-check: GPU_CHECK_BUDGET_S must be a number of seconds" >&2; exit 2; }

mkdir -p "$report_dir" || exit 2
report_dir=$(cd "$report_dir" && pwd)
LOG=$report_dir/logs.txt
: >"$LOG"
work=$(mktemp -d) || exit 2
trap 'rm -rf "$work"' EXIT

# ---- step bookkeeping ----
names=() statuses=() durations=() notes=()
failed=0 skipped=0

say() { echo "gpu-check: $*" >&2; }

record() { # NAME STATUS SECONDS NOTE
  names+=("$1") statuses+=("$2") durations+=("$3") notes+=("$4")
  case $2 in FAIL | TIMEOUT) failed=1 ;; SKIP) skipped=1 ;; esac
  say "$1: $2 (${3}s)${4:+ — $4}"
}

skip() { record "$1" SKIP 0 "$2"; }

# run_step NAME TIMEOUT_S DIR COMMAND...: runs COMMAND in DIR under `timeout`, capped by what is
# left of the budget; its output goes to $work/NAME.log and logs.txt.
run_step() {
  local name=$1 limit=$2 dir=$3 left rc t0
  shift 3
  left=$((BUDGET - (SECONDS - START) - 5))
  if [ "$left" -lt 10 ]; then
    record "$name" TIMEOUT 0 "not started: the ${BUDGET}s budget is spent"
    return 1
  fi
  [ "$limit" -le "$left" ] || limit=$left
  say "$name (at most ${limit}s): $*"
  t0=$SECONDS
  # shellcheck disable=SC2016 # the inner shell expands $1 and $@, not this one
  timeout -k 10 "$limit" bash -c 'cd "$1" && shift && exec "$@"' _ "$dir" "$@" >"$work/$name.log" 2>&1
  rc=$?
  { echo "===== $name (exit $rc, $((SECONDS - t0))s): $*"; cat "$work/$name.log"; echo; } >>"$LOG"
  case $rc in
    0) record "$name" PASS $((SECONDS - t0)) "" ;;
    124 | 137) record "$name" TIMEOUT $((SECONDS - t0)) "killed after ${limit}s" ;;
    *) record "$name" FAIL $((SECONDS - t0)) "exit $rc" ;;
  esac
  return "$rc"
}

gpu_info="" facts=()

write_report() { # EXIT_CODE VERDICT
  local f=$report_dir/report.md i
  {
    echo "# Forge GPU check"
    echo
    echo "**$2** (exit $1) — $(date -u '+%Y-%m-%d %H:%M UTC'), $((SECONDS - START)) s of a ${BUDGET} s budget, on ${HOSTNAME:-an unnamed host}."
    echo
    for i in "${facts[@]}"; do echo "- $i"; done
    echo
    echo "| step | status | seconds | note |"
    echo "| --- | --- | ---: | --- |"
    for i in "${!names[@]}"; do echo "| ${names[$i]} | ${statuses[$i]} | ${durations[$i]} | ${notes[$i]} |"; done
    if [ -n "$gpu_info" ]; then
      echo; echo "## GPU"; echo; echo '```'; echo "$gpu_info"; echo '```'
    fi
    for i in "${!names[@]}"; do
      [ -s "$work/${names[$i]}.log" ] || continue
      echo; echo "## ${names[$i]}: ${statuses[$i]}, last 40 lines"; echo; echo '```'
      grep -v '^{"reason":' "$work/${names[$i]}.log" | tail -n 40
      echo '```'
    done
    echo; echo "Full output: logs.txt."
  } >"$f"
}

finish() { # EXIT_CODE VERDICT
  write_report "$1" "$2"
  say "$2 (exit $1); report: $report_dir/report.md"
  exit "$1"
}

# ---- 1. tools (no GPU needed) ----
have() { command -v "$1" >/dev/null 2>&1; }
# The loader's library cache (ldconfig lives in /sbin, which a plain user's PATH may lack).
libraries() { { ldconfig -p || /sbin/ldconfig -p || /usr/sbin/ldconfig -p || true; } 2>/dev/null; }
have timeout || { say "needs coreutils' timeout"; exit 2; }
# Where NVIDIA's driver and toolkit keep their tools when PATH does not name them (after PATH, so
# whatever PATH finds first still wins).
for d in /usr/local/nvidia/bin /usr/local/cuda/bin /usr/local/cuda/compute-sanitizer; do
  [ ! -d "$d" ] || PATH=$PATH:$d
done
t0=$SECONDS
tools=""
for tool in cargo rustc nvidia-smi compute-sanitizer; do
  if have "$tool"; then
    tools+="$tool: $(timeout 20 "$tool" --version 2>&1 | grep -m1 -E '[0-9]+\.[0-9]+' || echo present)"$'\n'
  else
    tools+="$tool: absent"$'\n'
  fi
done
vulkan=$(libraries | awk '/libvulkan\.so\.1 / { print $NF; exit }')
vulkan=${vulkan:-absent}
tools+="Vulkan loader (libvulkan.so.1): $vulkan"
echo "$tools" >"$work/tools.log"
record tools PASS $((SECONDS - t0)) ""
if git rev-parse --git-dir >/dev/null 2>&1; then
  facts+=("source: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- 2>/dev/null || echo ' with uncommitted changes')")
fi

# ---- 2. build, or binaries built elsewhere (no GPU needed) ----
manifest=""
prebuilt=${GPU_CHECK_PREBUILT:-0}
have cargo || prebuilt=1
if [ "$prebuilt" = 1 ]; then
  # A packed archive newer than what was unpacked from it: unpack (m: extraction time as mtime).
  tgz=target/gpu-check/bin.tar.gz
  if [ -z "${GPU_CHECK_MANIFEST:-}" ] && [ -f "$tgz" ] && [ "$tgz" -nt target/gpu-check/bin/manifest ]; then
    tar -xzmf "$tgz" -C target/gpu-check || { record build FAIL 0 "cannot unpack $tgz"; finish 2 "cannot start"; }
  fi
  candidates=(target/gpu-check/bin/manifest target/gpu-check/manifest)
  [ -z "${GPU_CHECK_MANIFEST:-}" ] || candidates=("$GPU_CHECK_MANIFEST")
  for m in "${candidates[@]}"; do
    [ -f "$m" ] && { manifest=$m; break; }
  done
  if [ -z "$manifest" ]; then
    record build FAIL 0 "no cargo and no target/gpu-check/bin/manifest: run scripts/gpu-check.sh --pack where Rust is, then copy target/gpu-check/bin"
    finish 2 "cannot start"
  fi
  built_from=$(sed -n 's/^# built from //p' "$manifest")
  record build PASS 0 "prebuilt: $manifest${built_from:+, built from $built_from}"
else
  run_step build "$build_limit" . cargo build --release --workspace --all-targets || finish 1 "FAIL: the build failed"
  # The executables of the test targets, as Cargo names them (fresh after the build above;
  # --workspace so that features unify as in the build and nothing is compiled again).
  run_step test-binaries 120 . cargo test --release --workspace --no-run --message-format=json || finish 1 "FAIL: cannot list the test binaries"
  mkdir -p target/gpu-check
  manifest=target/gpu-check/manifest
  {
    echo "# written by scripts/gpu-check.sh: test binaries by target name"
    echo "# built from $(git rev-parse --short HEAD 2>/dev/null || echo 'an unknown commit')"
    echo "root $ROOT"
    echo "forge target/release/forge"
    # Only the targets named in TEST_BINS: `forge` is also the name of the CLI's own unit tests.
    grep '^{"reason":"compiler-artifact"' "$work/test-binaries.log" |
      sed -n 's/.*"target":{[^}]*"name":"\([^"]*\)"[^}]*}.*"executable":"\([^"]*\)".*/\1 \2/p' |
      sed "s| $ROOT/| |" | grep -E "^($(IFS='|'; echo "${TEST_BINS[*]}")) "
  } >"$manifest"
fi

bin_path() { # NAME → the binary's path, from the manifest
  local p
  p=$(awk -v n="$1" '$1 == n { print $2; exit }' "$manifest")
  [ -n "$p" ] || return 1
  case $p in /*) echo "$p" ;; *) echo "$ROOT/$p" ;; esac
}
missing=()
for b in "${TEST_BINS[@]}" forge; do
  if ! p=$(bin_path "$b") || [ ! -x "$p" ]; then missing+=("$b"); fi
done
if [ ${#missing[@]} -gt 0 ]; then
  record binaries FAIL 0 "$manifest lacks or points to no file for: ${missing[*]}"
  finish 2 "cannot start"
fi

if [ "$pack" = 1 ]; then
  t0=$SECONDS
  out=target/gpu-check/bin
  rm -rf "$out"
  mkdir -p "$out" || exit 2
  {
    echo "# packed by scripts/gpu-check.sh --pack: stripped test binaries by target name"
    sed -n 's/^# built from/# built from/p; /^root /p' "$manifest"
  } >"$out/manifest"
  for b in "${TEST_BINS[@]}" forge; do
    if have strip; then strip -o "$out/$b" "$(bin_path "$b")"; else cp "$(bin_path "$b")" "$out/$b"; fi ||
      finish 1 "FAIL: packing $b"
    echo "$b $out/$b" >>"$out/manifest"
  done
  # One compressed file too (about 30 MB against 75), for transfers with a size limit.
  tar -czf target/gpu-check/bin.tar.gz -C target/gpu-check bin || finish 1 "FAIL: packing"
  touch "$out/manifest" # not older than the archive: nothing to unpack here
  record pack PASS $((SECONDS - t0)) "$out: $(du -sh "$out" | cut -f1); target/gpu-check/bin.tar.gz: $(du -sh target/gpu-check/bin.tar.gz | cut -f1)"
  finish 0 "packed"
fi

# Prebuilt binaries read tests/fixtures under the folder they were built in.
built_root=$(awk '$1 == "root" { print $2; exit }' "$manifest")
if [ -n "$built_root" ] && [ "$built_root" != "$ROOT" ]; then
  if [ ! -e "$built_root" ] && mkdir -p "$(dirname "$built_root")" 2>/dev/null && ln -s "$ROOT" "$built_root" 2>/dev/null; then
    facts+=("binaries built in $built_root: linked it to $ROOT, where they read tests/fixtures")
  elif [ "$(cd "$built_root" 2>/dev/null && pwd -P)" != "$(pwd -P)" ]; then
    facts+=("binaries built in $built_root, which is not this tree: tests that read tests/fixtures read that tree's")
  fi
fi

# ---- 3. the GPU ----
gpu_why=""
if have nvidia-smi; then
  if smi=$(timeout 30 nvidia-smi -L 2>&1) && grep -q '^GPU ' <<<"$smi"; then
    gpu_info=$(timeout 30 nvidia-smi 2>&1)
  else
    gpu_why="nvidia-smi lists no GPU: $(head -n 1 <<<"$smi")"
  fi
elif [ -e /dev/nvidia0 ] && libraries | grep -q 'libcuda.so.1'; then
  gpu_info="no nvidia-smi; /dev/nvidia0 exists and the loader knows libcuda.so.1"
else
  gpu_why="no nvidia-smi, and no /dev/nvidia0 with libcuda.so.1"
fi
if [ -n "$gpu_why" ]; then
  record gpu SKIP 0 "no NVIDIA GPU ($gpu_why)"
  echo "gpu-check: no NVIDIA GPU ($gpu_why): stopping after the steps that need none (exit $NO_GPU_EXIT)"
  finish "$NO_GPU_EXIT" "no NVIDIA GPU"
fi
record gpu PASS 0 "$(head -n 1 <<<"$smi")"
run_step forge-devices 30 . "$(bin_path forge)" devices

# ---- the model ----
model_dir=${FORGE_MODEL_DIR:-}
if [ -z "$model_dir" ] && [ -f "models/$MODEL_FILE" ]; then model_dir=$ROOT/models; fi
if [ -z "$model_dir" ]; then
  xdg=${XDG_CACHE_HOME:-}
  case $xdg in /*) model_dir=$xdg/forge/models ;; *) model_dir=$HOME/.cache/forge/models ;; esac
fi
model=""
if [ -f "$model_dir/$MODEL_FILE" ]; then
  model=$model_dir/$MODEL_FILE
  export FORGE_MODEL_DIR=$model_dir
  facts+=("model: $model")
else
  facts+=("model: $MODEL_FILE is not in $model_dir: copy it to ./models (or set FORGE_MODEL_DIR) to run the steps that need it")
fi
need_model() { # STEP: true when the model is here, else records STEP as skipped
  [ -n "$model" ] && return 0
  skip "$1" "needs $MODEL_FILE (not in $model_dir)"
  return 1
}

# Test binaries run where `cargo test` runs them: in their package's folder. Each step states
# every requirement, so none leaks in from the caller's environment (CI exports FORGE_REQUIRE_WGPU).
cuda_env=(env FORGE_REQUIRE_CUDA=1 FORGE_REQUIRE_NVRTC=1 FORGE_REQUIRE_MODEL=1 FORGE_REQUIRE_WGPU=0 RUST_BACKTRACE=1)

# ---- 4. CUDA: kernels against the CPU, then greedy end to end, CUDA graphs on and off ----
run_step cuda-kernels 120 engine "${cuda_env[@]}" "$(bin_path forge_engine)" backend::cuda
run_step cuda-rope-scaling 60 tests "${cuda_env[@]}" "$(bin_path rope_scaling)"
run_step cuda-rope-scaling-no-graphs 60 tests "${cuda_env[@]}" FORGE_CUDA_GRAPH=0 "$(bin_path rope_scaling)"
if need_model cuda-greedy; then
  run_step cuda-greedy 90 tests "${cuda_env[@]}" "$(bin_path greedy_cuda)"
fi
if need_model cuda-greedy-no-graphs; then
  run_step cuda-greedy-no-graphs 90 tests "${cuda_env[@]}" FORGE_CUDA_GRAPH=0 "$(bin_path greedy_cuda)"
fi
run_step cuda-devices-check 60 tests "${cuda_env[@]}" FORGE_REQUIRE_MODEL=0 "$(bin_path devices)"

# ---- 5. wgpu on the NVIDIA Vulkan driver ----
wgpu_env=(env FORGE_REQUIRE_WGPU=1 FORGE_REQUIRE_MODEL=1 FORGE_REQUIRE_CUDA=0 FORGE_REQUIRE_NVRTC=0 RUST_BACKTRACE=1)
# The ICD the driver ships, where there is one, alone: wgpu then runs on NVIDIA's driver even where
# the loader's own list lacks it or also holds a software one (lavapipe).
nv_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] && [ -f "$nv_icd" ]; then
  wgpu_env+=(VK_DRIVER_FILES="$nv_icd")
  facts+=("wgpu: VK_DRIVER_FILES=$nv_icd")
fi
[ "$vulkan" != absent ] || facts+=("wgpu: ldconfig knows no libvulkan.so.1, so the wgpu steps may not find the GPU")
if need_model wgpu-greedy; then
  run_step wgpu-greedy 120 tests "${wgpu_env[@]}" "$(bin_path greedy_wgpu)"
fi

# ---- 6. bench ----
if need_model bench; then
  run_step bench 120 . "${wgpu_env[@]}" "$(bin_path forge)" bench -m "$model" --backends cuda,wgpu -p 512 -n 128 \
    --json "$report_dir/bench.json" --markdown "$report_dir/bench.md"
fi

# ---- 7. compute-sanitizer memcheck on the kernel tests: last, as the slowest (kernels run
# many times slower under it), so that what is left of the budget bounds it and nothing else ----
if have compute-sanitizer; then
  if ! run_step cuda-memcheck 150 engine "${cuda_env[@]}" compute-sanitizer --tool memcheck --error-exitcode 99 \
    "$(bin_path forge_engine)" backend::cuda --skip every_kernel_compiles_with_nvrtc --test-threads=1; then
    # Some runtimes (gVisor) refuse the tool outright: that is not a finding about Forge.
    if grep -q 'Device not supported' "$work/cuda-memcheck.log"; then
      statuses[${#statuses[@]} - 1]=SKIP
      notes[${#notes[@]} - 1]="compute-sanitizer: Device not supported on this machine"
      skipped=1 failed=0
      for s in "${statuses[@]}"; do case $s in FAIL | TIMEOUT) failed=1 ;; esac; done
    fi
  fi
else
  skip cuda-memcheck "compute-sanitizer is not installed"
fi

if [ "$failed" = 1 ]; then finish 1 "FAIL"; fi
if [ "$skipped" = 1 ]; then finish 4 "PASS, with steps skipped"; fi
finish 0 "PASS"
