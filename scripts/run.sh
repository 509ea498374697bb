#!/usr/bin/env bash
# One entry point for a fresh machine: creates ./.venv on first use, installs videoattn and what it
# needs into it, then runs the requested job.
#
#   bash scripts/run.sh demo [demo options]   -> videoattn demo (the main job)
#   bash scripts/run.sh test [pytest options] -> ruff + the full test suite
#   bash scripts/run.sh install EXTRA...      -> install optional extras of pyproject.toml into the venv
#                                                (onnx: `videoattn export --format onnx`; torchcodec; dev)
#   bash scripts/run.sh <any videoattn subcommand and options>
#
# torch is chosen before the package is installed, so pip never pulls a CUDA build by accident:
#   * a machine with an NVIDIA driver (nvidia-smi works) gets PyPI's default (CUDA) wheels;
#   * a CPU-only machine gets a CPU build: a local CPU wheel pip already knows (find-links) if any,
#     otherwise one from PyTorch's CPU wheel index (override with VIDEOATTN_TORCH_INDEX_URL).
# Set VIDEOATTN_TORCH_SPEC (e.g. "torch==2.6.0") to choose another version.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VIDEOATTN_VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_CPU_VERSION=2.13.0

log() { printf '[videoattn setup] %s\n' "$*" >&2; }

have_cuda() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }

install_torch() {
  local pip="$VENV/bin/python -m pip"
  if [ -n "${VIDEOATTN_TORCH_SPEC:-}" ]; then
    log "installing ${VIDEOATTN_TORCH_SPEC} as asked (VIDEOATTN_TORCH_SPEC)"
    $pip install "${VIDEOATTN_TORCH_SPEC}"
  elif have_cuda; then
    log "NVIDIA driver found: installing PyPI's CUDA build of torch"
    $pip install "torch>=2.11"
  else
    local tmp
    tmp=$(mktemp -d)
    if $pip download --quiet --no-index --no-deps "torch==${TORCH_CPU_VERSION}" -d "$tmp" >/dev/null 2>&1; then
      log "no GPU: installing the local CPU wheel $(basename "$tmp"/torch-*.whl)"
      $pip install "$tmp"/torch-*.whl
    else
      local index=${VIDEOATTN_TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
      log "no GPU: installing the CPU build of torch==${TORCH_CPU_VERSION} from ${index}"
      $pip install "torch==${TORCH_CPU_VERSION}" --extra-index-url "$index"
    fi
    rm -rf "$tmp"
  fi
}

ensure_env() {
  local extras=$1
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
      || { log "Python >= 3.10 is required ($PYTHON is $("$PYTHON" --version 2>&1))"; exit 1; }
    log "creating $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  "$VENV/bin/python" -c 'import torch' >/dev/null 2>&1 || install_torch
  # Reinstall only when the project metadata or the requested extras change.
  # The stamp holds "<pyproject checksum> <extras>"; an install with extras also serves a plain run.
  local stamp="$VENV/.videoattn-installed" sum have=""
  sum=$(cksum < pyproject.toml | cut -d' ' -f1)
  [ -f "$stamp" ] && have=$(cat "$stamp")
  if [ "$have" != "$sum $extras" ] && { [ -n "$extras" ] || [ "${have%% *}" != "$sum" ]; }; then
    log "installing videoattn${extras:+[$extras]} (editable) and its dependencies"
    "$VENV/bin/python" -m pip install --quiet -e ".${extras:+[$extras]}"
    echo "$sum $extras" > "$stamp"
  fi
}

# The extras pyproject.toml declares (the names under [project.optional-dependencies]).
known_extras() {
  sed -n '/^\[project.optional-dependencies\]/,/^\[/p' pyproject.toml | sed -n 's/^\([A-Za-z0-9_-]*\) *=.*/\1/p'
}

cmd=${1:-demo}
[ $# -gt 0 ] && shift
case "$cmd" in
  install)
    extras=$(known_extras | tr '\n' ' ')
    if [ $# -eq 0 ]; then
      log "usage: bash scripts/run.sh install EXTRA... (extras: ${extras% })"
      exit 2
    fi
    for extra in "$@"; do
      case " $extras" in
        *" $extra "*) ;;
        *) log "unknown extra '$extra': pyproject.toml offers ${extras% }"; exit 2 ;;
      esac
    done
    ensure_env "$(IFS=,; echo "$*")"
    log "installed videoattn[$(IFS=,; echo "$*")] into $VENV"
    ;;
  test)
    # The DALI decoder's tests run on DALI's CPU backend; its wheels are Linux x86_64 (elsewhere they skip).
    if [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ]; then ensure_env dev,dali; else ensure_env dev; fi
    export PATH="$PWD/$VENV/bin:$PATH"
    ruff check src tests benchmarks
    # pytest exits 5 when it collected nothing: that is a failure here, as any non-zero status is.
    exec python -m pytest "$@"
    ;;
  *)
    ensure_env ""
    exec "$VENV/bin/videoattn" "$cmd" "$@"
    ;;
esac
