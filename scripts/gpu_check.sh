#!/usr/bin/env bash
# The check a GPU owner runs: is videoattn sound on this CUDA machine?
#
#   bash scripts/gpu_check.sh            run every stage, print one summary line per stage
#   bash scripts/gpu_check.sh --dry-run  list the stages and their commands; run nothing
#
# Stages: the CUDA check, the package install (no network), the test suite without and with the
# `cuda`-marked tests (pytest -n <cores> when pytest-xdist is there), a tiny synthetic dataset, then
# for fp16 and for bf16 a 2-epoch train / test / predict / export round trip on the GPU, and the GPU
# benchmarks (benchmarks/gpu.py, benchmarks/loader_gpu.py) as short smoke runs where those files exist
# (the measurements: scripts/device_session.sh). About 8 minutes or less on one GPU.
#
# Nothing is downloaded: the Python environment must already hold torch (a CUDA build) and the
# other dependencies (`bash scripts/run.sh test` or `pip install -e '.[dev]'` sets one up); the
# package itself is installed with `pip install -e . --no-deps --no-build-isolation --no-index`,
# and every command runs this checkout's src/ whatever else is installed.
#
# Environment: PYTHON (default: ./.venv/bin/python if present, else python3),
# VIDEOATTN_GPU_CHECK_DIR (scratch folder; default a new temporary one, removed after a pass),
# VIDEOATTN_GPU_CHECK_WORKERS (pytest -n; default the number of CPU cores).
#
# Exit status: 0 every stage passed; 1 a stage failed (its log's last lines are printed above the
# summary); 2 bad usage; 3 no CUDA device visible to torch (one line, nothing else is run).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DRY_RUN=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check: unknown argument '$arg' (expected --dry-run or --help)" >&2; exit 2 ;;
  esac
done

if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3
fi
WORKERS=${VIDEOATTN_GPU_CHECK_WORKERS:-$(nproc 2>/dev/null || echo 4)}
DIR=${VIDEOATTN_GPU_CHECK_DIR:-}
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"

# ---------------------------------------------------------------- stages
NAMES=() ; COMMANDS=() ; LIMITS=()
stage() { NAMES+=("$1"); LIMITS+=("$2"); COMMANDS+=("$3"); }

VA="\"\$PY\" -m videoattn"
stage install 120 "install_package"
stage tests 330 "run_pytest -m 'not cuda'"
stage tests-cuda 150 "run_pytest -m cuda"
stage synth 60 "$VA data synth --out \"\$DIR/data\" --num-videos 24 --frames 8 --size 32"
for precision in fp16 bf16; do
  work="\$DIR/$precision"
  stage "$precision-train" 120 "write_config $precision && $VA train --config \"$work.yaml\" --no-progress"
  stage "$precision-test" 60 "$VA test --config \"$work.yaml\" --checkpoint \"$work/best.pt\" --out \"$work/test\""
  stage "$precision-predict" 60 "$VA predict \"\$(first_video)\" --config \"$work.yaml\" --checkpoint \"$work/best.pt\" --device cuda --out \"$work/predictions.json\" --no-progress"
  stage "$precision-export" 120 "$VA export --config \"$work.yaml\" --checkpoint \"$work/best.pt\" --format onnx --out \"$work/model.onnx\""
done
# The benchmarks as smoke runs (scratch outputs; the measurements themselves: scripts/device_session.sh).
stage bench-gpu 90 "run_if_present benchmarks/gpu.py --skip-models --repeats 2 --warmup 1 --out \"\$DIR/gpu.json\""
stage bench-loader-gpu 90 "run_if_present benchmarks/loader_gpu.py --models r2d50 --steps 2 --warmup 1 --batch 4 --num-videos 16 --out \"\$DIR/loader_gpu.json\""

if [ "$DRY_RUN" = 1 ]; then
  echo "gpu_check stages (python: $PY; pytest -n $WORKERS):"
  for i in "${!NAMES[@]}"; do
    printf '  %-18s %4ss  %s\n' "${NAMES[$i]}" "${LIMITS[$i]}" "${COMMANDS[$i]}"
  done
  exit 0
fi

# ---------------------------------------------------------------- helpers the stages call
install_package() {
  "$PY" -m pip install --quiet --no-deps --no-build-isolation --no-index -e "$ROOT" \
    || echo "(pip could not install the package; running from $ROOT/src through PYTHONPATH)"
  "$PY" -c "import videoattn; print('videoattn', videoattn.__version__, 'from', videoattn.__file__)"
}

run_pytest() {
  local parallel=()
  if "$PY" -c "import xdist" >/dev/null 2>&1; then parallel=(-n "$WORKERS"); fi
  "$PY" -m pytest -q -p no:cacheprovider "${parallel[@]}" "$@" tests
}

write_config() {  # the tiny recipe of the engine tests, on the GPU at precision $1
  cat > "$DIR/$1.yaml" <<EOF
model: {name: r2d18, num_frames: 4, dropout: 0.5, options: {variant: tsm, base_channels: 8}}
data: {format: ssv2, root: $DIR/data/videos, train_annotations: $DIR/data/train.json,
       val_annotations: $DIR/data/validation.json, labels: $DIR/data/labels.json, size: 32,
       scale_size: 32, num_workers: 2}
train: {work_dir: $DIR/$1, epochs: 2, batch_size: 4, lr: 0.01, schedule: cosine, device: cuda,
        precision: $1, seed: 1, progress: false}
eval: {batch_size: 8}
EOF
}

first_video() { find "$DIR/data/videos" -type f | sort | head -n 1; }

run_if_present() {
  if [ ! -f "$ROOT/$1" ]; then echo "SKIP: $1 is not in this checkout"; return 0; fi
  local script=$1; shift
  "$PY" "$ROOT/$script" "$@"
}

# ---------------------------------------------------------------- the CUDA check
if ! cuda=$("$PY" -c "import torch, sys; ok = torch.cuda.is_available(); print(\
f'{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}' if ok else \
f'torch {torch.__version__} (CUDA build: {torch.version.cuda}) sees no CUDA device'); sys.exit(0 if ok else 3)" \
  2>&1); then
  echo "gpu_check: no CUDA GPU here: ${cuda##*$'\n'} (python: $PY); nothing was run" >&2
  exit 3
fi

KEEP=1
if [ -z "$DIR" ]; then DIR=$(mktemp -d "${TMPDIR:-/tmp}/videoattn-gpu-check.XXXXXX"); KEEP=0; fi
mkdir -p "$DIR/logs"
echo "gpu_check: $cuda; python $PY; scratch $DIR"

export PY DIR ROOT WORKERS
export -f install_package run_pytest write_config first_video run_if_present
RESULTS=() ; FAILED=0 ; START=$SECONDS ; declare -A WORD
for i in "${!NAMES[@]}"; do
  name=${NAMES[$i]} ; limit=${LIMITS[$i]} ; log="$DIR/logs/$name.log" ; t0=$SECONDS
  if [[ "$name" =~ -(test|predict|export)$ ]] && [ "${WORD[${name%%-*}-train]:-}" != PASS ]; then
    RESULTS+=("$(printf 'SKIP  %5ss  %-18s %s' 0 "$name" "(no checkpoint: ${name%%-*}-train failed)")"); continue
  fi
  # Each stage: its own time limit (timeout stops the stage's whole process group), output to its log.
  timeout --kill-after=10 "$limit" bash -c "${COMMANDS[$i]}" > "$log" 2>&1
  status=$?
  seconds=$((SECONDS - t0))
  note=$(grep -E '^SKIP: | (passed|failed|skipped|errors?) in [0-9.]+s' "$log" | tail -n 1 | tr -d '=' \
         | sed 's/^ *//' | cut -c1-80)
  if [ "$status" = 0 ]; then
    word=PASS; [[ "$note" == SKIP:* ]] && word=SKIP && note=${note#SKIP: }
  else
    word=FAIL; FAILED=1
    [ "$status" = 124 ] && note="timed out after ${limit}s"
    echo "---- $name failed (exit $status); last lines of $log:"
    tail -n 15 "$log"
  fi
  WORD[$name]=$word
  RESULTS+=("$(printf '%s  %5ss  %-18s %s' "$word" "$seconds" "$name" "$note")")
done

echo "==== gpu_check summary ($cuda)"
printf '%s\n' "${RESULTS[@]}"
echo "total $((SECONDS - START))s (budget 480s); logs in $DIR/logs"
if [ "$FAILED" = 0 ] && [ "$KEEP" = 0 ]; then rm -rf "$DIR"; echo "(all passed: scratch folder removed)"; fi
exit "$FAILED"
