#!/usr/bin/env bash
# The checks that need a GPU, as one script for a lent CUDA machine (under 10 minutes):
#   1. every learner's CUDA path and stacked seeds on CUDA (tests that are skipped without CUDA);
#   2. --stack-seeds close against one-by-one training on the GPU (speed-up, weight gap);
#   3. lsa training steps per second on the GPU;
#   4. the paper reproduction, 3 seeds, seeds stacked (close), against the 3-minute goal
#      (cut off at REPRO_LIMIT seconds; a rerun resumes from the checkpoints in .iclbench-cache).
# Each step's output goes to ${OUT:-/tmp/device-check}/<step>.txt and its time to times.txt.
set -u
OUT=${OUT:-/tmp/device-check}
REPRO_LIMIT=${REPRO_LIMIT:-300}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu tries the script on a CPU
mkdir -p "$OUT"
export TQDM_DISABLE=1
step() {  # step NAME LIMIT COMMAND...: run it, keep its output and wall time, go on whatever happens
  local name=$1 limit=$2; shift 2
  local start=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
  local rc=$?
  echo "$name rc=$rc ${limit}s-limit $((SECONDS - start))s" | tee -a "$OUT/times.txt"
  tail -n 8 "$OUT/$name.txt"
}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >"$OUT/gpu.txt" 2>&1; cat "$OUT/gpu.txt"
step cuda_tests 150 python -m pytest -q -p no:cacheprovider -o addopts="" tests/test_devices.py tests/test_stacked.py -k cuda
step stacked_seeds 120 python benchmarks/stacked_seeds.py --device "$DEVICE" --steps 50 --close
step train_speed 60 python benchmarks/train_speed.py --device "$DEVICE" --steps 300
step reproduce_paper "$REPRO_LIMIT" iclbench reproduce paper --seeds 0,1,2 --device "$DEVICE" --stack-seeds close \
  --jobs 4 --out "$OUT/paper"
