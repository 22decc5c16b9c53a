#!/usr/bin/env bash
# The checks to run when a GPU machine is lent (the device tool runs it in a copy of the working tree;
# it needs the .venv carried over, or `bash packaging/dev-setup.sh` first). Everything goes to
# $OUT/gpu-check.txt; a failing step is reported and the next one runs.
#   bash packaging/gpu-check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/medstation-gpu-check}
mkdir -p "$OUT"
export QT_QPA_PLATFORM=offscreen MEDSTATION_DATA="$OUT/data" MEDSTATION_DB="$OUT/data/studies.sqlite"
PY=.venv/bin/python
step() { echo; echo "== $*"; local t0; t0=$(date +%s.%N); "$@"; local rc=$?
         echo "-- rc=$rc, $(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $t0 }") s"; }
{
    step nvidia-smi -L
    step $PY -c "import torch; print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name(0))"
    # the suite's GPU marks: the detector and a training step on CUDA against the CPU
    step $PY -m pytest -q -m gpu tests/ai/test_gpu.py
    # detection of a 300-slice CT (target: at most 2 s on a GPU)
    step $PY -m medstation bench infer --device cuda
    # one fine-tune epoch on 200 slices (target: at most 10 s; the step lines carry the timing)
    step $PY -m medstation train-detector --out "$OUT/ft" --base nodule-detector --samples 200 --steps 100 \
        --batch-size 2 --epoch-length 100 --device cuda
    # the follow-up: registration, matching and the RNN (the RNN runs on the CPU by design: 50 tracks
    # take under a millisecond)
    step $PY -m medstation bench followup
    # the three jobs (detection on CUDA; the fine-tuning child picks CUDA too)
    step $PY -m medstation selftest
    # the trimmed bundle, if one was built and carried: its CUDA paths are what the stubs must not break
    if [ -x dist/medstation/medstation ]; then step dist/medstation/medstation selftest; fi
} 2>&1 | tee "$OUT/gpu-check.txt"
