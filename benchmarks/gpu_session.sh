#!/usr/bin/env bash
# One prepared run for a borrowed GPU machine that starts bare (Python with torch, numpy, matplotlib, tqdm and
# pytest; no Jupyter): the CUDA tests, the CUDA benchmark, a CPU-vs-CUDA scoring check, then the most valuable
# unfinished Omniglot cell trained for the time left, scored on the GPU. Every stage has its own time limit and
# a failing stage does not stop the next; the whole fits BUDGET seconds (default 500, for a 9-minute call).
#
# Data does not travel beside the repository, so copy what it needs into git-ignored folders and carry them
# (together under 64 MiB: the Omniglot archives are 14 MB, their 28x28 cache 26 MB):
#   mkdir -p data/omniglot data/gpu_cache
#   cp /path/to/omniglot/*.zip data/omniglot/ && cp data/cache/omniglot28_*.npz data/gpu_cache/
#   device run, carry ["data/omniglot", "data/gpu_cache"]:   bash benchmarks/gpu_session.sh
# MiniImagenet's training split is 131 MB of JPEGs (813 MB decoded), over the 64 MiB a call may carry, so its
# cells train on the CPU (benchmarks/README.md, "CUDA").
# Logs, the benchmark's JSON and the trained checkpoint land in $OUT; copy the checkpoint over
# data/checkpoints/ (it already holds its 600-task scores, computed on the GPU).
# Settings (environment): BUDGET=500  CELL=omniglot_20way_5shot  SCORE_CHECK=omniglot_5way_1shot
#   BENCH_ARGS="--rounds 5 --iterations 10"  (BENCH_ARGS=skip leaves the benchmark out)
set -uo pipefail
cd "$(dirname "$0")/.."
BUDGET=${BUDGET:-500}
CELL=${CELL:-omniglot_20way_5shot}
SCORE_CHECK=${SCORE_CHECK:-omniglot_5way_1shot}
BENCH_ARGS=${BENCH_ARGS:---rounds 3 --iterations 5}
OUT=${OUT:-$(mktemp -d)}
PYTHON=${PYTHON:-python3}
export OMNIGLOT_DIR=${OMNIGLOT_DIR:-data/omniglot} MAML_CACHE_DIR=${MAML_CACHE_DIR:-data/gpu_cache}
export PYTHONPATH=. PYTHONUNBUFFERED=1
left() { echo $((BUDGET - SECONDS)); }
stage() { echo; echo "=== $1 (at ${SECONDS} s of ${BUDGET})"; }

stage "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PYTHON" -c "import torch; print('torch', torch.__version__, '| CUDA', torch.version.cuda)"

stage "CUDA tests and the headless test"
timeout 130 "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_headless.py \
  > "$OUT/tests.txt" 2>&1
tests_status=$?
tail -n 25 "$OUT/tests.txt"
# training replays a CUDA graph; if the graph tests failed, train without one (and say so)
if grep -q "FAILED.*graph" "$OUT/tests.txt"; then export MAML_CUDA_GRAPHS=0; echo "graph tests failed: training without CUDA graphs"; fi

if [ "$BENCH_ARGS" != skip ]; then
  stage "benchmark"
  # shellcheck disable=SC2086
  timeout 150 "$PYTHON" benchmarks/cuda_training_step.py $BENCH_ARGS --json "$OUT/cuda_training_step.json" \
    2>&1 | tee "$OUT/cuda_training_step.txt"
fi

stage "scoring on CUDA against the CPU's stored scores ($SCORE_CHECK)"
cp "data/checkpoints/$SCORE_CHECK.pt" /tmp/score_check.pt
if timeout 60 "$PYTHON" -m helpers evaluate "$SCORE_CHECK" --checkpoint /tmp/score_check.pt --device cuda \
  > "$OUT/score_check.txt" 2>&1; then
"$PYTHON" - "$SCORE_CHECK" <<'EOF' 2>&1 | tee -a "$OUT/score_check.txt"
import sys
from helpers.checkpoints import load_checkpoint
name = sys.argv[1]
cpu, cuda = (load_checkpoint(p).metrics for p in (f"data/checkpoints/{name}.pt", "/tmp/score_check.pt"))
for key in sorted(k for k in cpu if k.startswith("test_accuracy")):
    print(f"{key:32s} CPU {cpu[key]['mean']:6.2f} ± {cpu[key]['ci95']:.2f}   CUDA {cuda[key]['mean']:6.2f} ± {cuda[key]['ci95']:.2f}")
EOF
grep "scored on" "$OUT/score_check.txt"
else tail -n 15 "$OUT/score_check.txt"; fi

stage "training $CELL"
cp "data/checkpoints/$CELL.pt" "$OUT/$CELL.pt"
scoring=90  # seconds kept for the 600-task scoring after training (both query sizes)
minutes=$("$PYTHON" -c "print(max(0.5, ($(left) - $scoring - 45) / 60))")
echo "training for $minutes minutes, then scoring"
timeout $(( $(left) > 60 ? $(left) : 60 )) "$PYTHON" -m helpers train "$CELL" --device cuda --minutes "$minutes" \
  --out "$OUT/$CELL.pt" > "$OUT/train_$CELL.txt" 2>&1
echo "train exit status $?"
tr '\r' '\n' < "$OUT/train_$CELL.txt" | grep -v "^$CELL: .*it/s\]$" | tail -n 30
echo; echo "tests exit status $tests_status; finished at ${SECONDS} s; results in $OUT"
