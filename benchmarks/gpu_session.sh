#!/usr/bin/env bash
# One prepared run for a borrowed GPU machine: the Omniglot meta-iteration benchmark on CUDA, then each
# expensive Omniglot cell resumed from its shipped checkpoint for a fixed time budget.
#
# The GPU machine's python3 already holds a CUDA build of torch; data outside the repository does not travel with the working tree,
# so copy the archives into the git-ignored data/omniglot/ first and carry that folder:
#   cp /path/to/omniglot/*.zip data/omniglot/
#   device run, carry ["data/omniglot"]:   bash benchmarks/gpu_session.sh
# Resumed checkpoints land in $OUT (they come back); copy them over data/checkpoints/ and score them with
# `python -m helpers evaluate NAME`. Settings (environment):
#   DEVICE=cuda  MINUTES=2 (per cell)  CELLS="omniglot_20way_5shot omniglot_20way_1shot omniglot_5way_5shot"
#   BENCH_ARGS="--rounds 3 --iterations 3 --cells ..."  (BENCH_ARGS=skip leaves the benchmark out)
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
MINUTES=${MINUTES:-2}
CELLS=${CELLS:-omniglot_20way_5shot omniglot_20way_1shot omniglot_5way_5shot}
# MiniImagenet (200 MB of archives) is too large to carry to the GPU machine, so only the Omniglot cells by default
BENCH_ARGS=${BENCH_ARGS:---rounds 3 --iterations 3 --cells omniglot_5way_1shot omniglot_20way_1shot}
OUT=${OUT:-$(mktemp -d)}
PYTHON=${PYTHON:-python3}
export OMNIGLOT_DIR=${OMNIGLOT_DIR:-data/omniglot} PYTHONPATH=. PYTHONUNBUFFERED=1

if [ "$DEVICE" = cuda ]; then nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; fi
"$PYTHON" -c "import torch; print('torch', torch.__version__, '| device', '$DEVICE')"
if [ "$BENCH_ARGS" != skip ]; then
  # shellcheck disable=SC2086
  "$PYTHON" benchmarks/conv_meta_step.py --device "$DEVICE" $BENCH_ARGS | tee "$OUT/conv_meta_step_$DEVICE.txt"
fi
for cell in $CELLS; do
  if [ -f "data/checkpoints/$cell.pt" ]; then cp "data/checkpoints/$cell.pt" "$OUT/$cell.pt"; fi
  "$PYTHON" -m helpers train "$cell" --device "$DEVICE" --minutes "$MINUTES" --out "$OUT/$cell.pt" \
    > "$OUT/train_$cell.txt" 2>&1 || { tail -n 30 "$OUT/train_$cell.txt"; exit 1; }
  tail -n 12 "$OUT/train_$cell.txt"
done
echo "results in $OUT"
