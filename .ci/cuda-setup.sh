#!/usr/bin/env bash
# Installs NVRTC and ptxas from NVIDIA's pip wheels (no driver, no GPU needed) into
# ~/.cache/forge/cuda-venv, once, and prints the lines that let the CUDA tests find them:
#   eval "$(.ci/cuda-setup.sh)"
# Idempotent: a second run only prints (a stamp file records the installed version).
# Needs python3 with venv (Debian: python3-venv). Everything but the export lines goes to stderr.
set -euo pipefail

VERSION=12.9.86
VENV="${FORGE_CUDA_VENV:-$HOME/.cache/forge/cuda-venv}"
STAMP="$VENV/.forge-cuda-$VERSION"

if [ ! -f "$STAMP" ]; then
  echo "cuda-setup: installing nvidia-cuda-nvrtc-cu12 and nvidia-cuda-nvcc-cu12 $VERSION into $VENV" >&2
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    "nvidia-cuda-nvrtc-cu12==$VERSION" "nvidia-cuda-nvcc-cu12==$VERSION" >&2
  touch "$STAMP"
fi

SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
NVRTC_LIB="$SITE/nvidia/cuda_nvrtc/lib"
PTXAS="$SITE/nvidia/cuda_nvcc/bin/ptxas"
[ -e "$NVRTC_LIB/libnvrtc.so.12" ] || { echo "cuda-setup: $NVRTC_LIB/libnvrtc.so.12 is missing" >&2; exit 1; }
[ -x "$PTXAS" ] || { echo "cuda-setup: $PTXAS is missing" >&2; exit 1; }

echo "export LD_LIBRARY_PATH=\"$NVRTC_LIB\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
echo "export FORGE_PTXAS=\"$PTXAS\""
echo "export FORGE_REQUIRE_NVRTC=1"
