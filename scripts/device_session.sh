#!/usr/bin/env bash
# One prepared run for a lent GPU machine (issues 25 and 26): the measurements their "Done when" needs,
# in the order that matters most, each stage under its own time limit, everything written under $OUT.
#
#   bash scripts/device_session.sh [--dry-run] [--official DIR] [--stages LIST]
#
# Stages (default cuda-tests,gpu,loader, in this order; --stages picks a comma-separated subset; compile
# only on request). Budget: a device call runs at most 600 s and a session has 15 minutes of device time
# with the machine's start, so run two calls back to back (the machine is released after ~30 s idle):
#   bash scripts/device_session.sh --official .official --stages cuda-tests,gpu     (<= 450 s)
#   bash scripts/device_session.sh --stages loader                                   (<= 240 s)
# and --stages compile (<= 180 s) only if time is left.
#   cuda-tests   pytest -m cuda: the GPU twins of the fused Triton kernels, DALI/nvJPEG decoding, AMP,
#                checkpoints (~2 min)
#   gpu          benchmarks/gpu.py: every block row of issue 25 (ours, the Triton rows, the NL attention
#                paths, official modules found under --official) and the whole-model frames/s; each
#                section is saved as soon as it is measured, so a time limit keeps what ran (~5 min)
#   loader       benchmarks/loader_gpu.py at a reduced size: r2d50 from SSv2-like webm and SSv1-like JPEG
#                folders (the issue's two targets) with every decoder that imports (nvdec, nvjpeg),
#                against the from-memory rate, saved after each run (~4 min)
#   compile      model.compile's gain for r2d50 and r2d50_gta (inductor compiles for minutes; last)
#
# The machine (see the device tool's notes) has python3 with torch + torchvision + triton and most
# dependencies, no network, and NOT PyAV: carry it as a wheel. Preparation on the development machine,
# once per session (paths are ignored by git; nothing of the official repositories is committed):
#   echo /.whl/ >> .git/info/exclude; echo /.official/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl av
#   (av 19.0.2 for cp312: 35 MB, inside the 64 MiB a call may carry; its FFmpeg has NVDEC, so it also
#   brings data.decoder: nvdec, the GPU video decoder that can reach a machine without network)
#   fetch the official repositories named in benchmarks/gpu.py's OFFICIAL (the search tool's fetch puts
#   them under /work/.mirror/owner+name/repo), then
#   python benchmarks/stage_official.py --mirrors /work/.mirror --out .official   (~0.6 MB: the specs'
#   folders' .py files at the fetched commit, .official/<spec>/..., with a SOURCE file each)
# Then one device call, carry [".whl", ".official"], command:
#   bash scripts/device_session.sh --official .official
# and copy $OUT's files into benchmarks/results/ here (gpu.json, gpu_compile.json, loader_gpu.json; the logs
# beside them).
#
# Exit status: 0 all stages passed, 1 a stage failed (the others still ran), 2 bad usage, 3 no CUDA.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/device_out}
PY=${PYTHON:-python3}
DRY_RUN=0
OFFICIAL=""
STAGES="cuda-tests,gpu,loader"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --official) OFFICIAL=${2:-}; shift ;;
    --stages) STAGES=${2:-}; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "device_session: unknown argument '$1' (expected --dry-run, --official DIR, --stages LIST)" >&2; exit 2 ;;
  esac
  shift
done
for stage in ${STAGES//,/ }; do
  case "$stage" in cuda-tests|gpu|loader|compile) ;; *) echo "device_session: unknown stage '$stage' (cuda-tests, gpu, loader, compile)" >&2; exit 2 ;; esac
done
if [ -n "$OFFICIAL" ] && [ ! -d "$OFFICIAL" ]; then
  echo "device_session: --official $OFFICIAL is not a directory" >&2; exit 2
fi

# --official DIR: every subfolder is one spec's staged files (benchmarks/stage_official.py names them).
official_args=()
if [ -n "$OFFICIAL" ]; then
  for dir in "$OFFICIAL"/*/; do [ -d "$dir" ] && official_args+=(--official "$(basename "$dir")=${dir%/}"); done
fi

declare -A COMMAND LIMIT
COMMAND[cuda-tests]="\"\$PY\" -m pytest -m cuda -q -p no:cacheprovider --timeout 300 tests"
LIMIT[cuda-tests]=120
COMMAND[gpu]="\"\$PY\" benchmarks/gpu.py ${official_args[*]} --out \"\$OUT/gpu.json\""
LIMIT[gpu]=330
COMMAND[compile]="\"\$PY\" benchmarks/gpu.py --skip-blocks --skip-models --compile r2d50,r2d50_gta --out \"\$OUT/gpu_compile.json\""
LIMIT[compile]=180
COMMAND[loader]="\"\$PY\" benchmarks/loader_gpu.py --models r2d50 --sources webm,frames --steps 24 --warmup 6 --num-videos 192 --out \"\$OUT/loader_gpu.json\""
LIMIT[loader]=240

if [ "$DRY_RUN" = 1 ]; then
  echo "device_session stages (python: $PY; out: $OUT):"
  for stage in ${STAGES//,/ }; do printf '  %-11s %4ss  %s\n' "$stage" "${LIMIT[$stage]}" "${COMMAND[$stage]}"; done
  exit 0
fi

mkdir -p "$OUT"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "device_session: the carried wheels in .whl/ did not install" >&2; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)"; then
  echo "device_session: torch sees no CUDA device"; exit 3
fi
"$PY" - > "$OUT/environment.txt" 2>&1 <<'EOF'
import importlib, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
for name in ("triton", "torchvision", "av", "nvidia.dali"):
    try:
        print(name, getattr(importlib.import_module(name), "__version__", "?"))
    except Exception as error:
        print(name, "not importable:", type(error).__name__)
EOF
cat "$OUT/environment.txt"

status=0
summary=()
for stage in ${STAGES//,/ }; do
  start=$(date +%s)
  timeout "${LIMIT[$stage]}" bash -c "PY='$PY' OUT='$OUT'; ${COMMAND[$stage]}" > "$OUT/$stage.log" 2>&1
  rc=$?
  seconds=$(( $(date +%s) - start ))
  if [ $rc = 0 ]; then summary+=("PASS $stage ${seconds}s")
  else
    status=1
    summary+=("FAIL $stage ${seconds}s (exit $rc$([ $rc = 124 ] && echo ', time limit'))")
    tail -n 15 "$OUT/$stage.log"
  fi
done
printf '%s\n' "${summary[@]}" | tee "$OUT/summary.txt"
exit $status
