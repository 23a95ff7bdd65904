#!/usr/bin/env bash
# nabla against PyTorch on this machine's CPU, pinned to a few of its cores,
# in one go (2 min 36 s on 2 cores of an AMD EPYC Zen 4, 3 min 41 s on 2 cores of an Intel Xeon
# family 6 model 207): the issue-12 measurements for a
# machine this project only borrows (a GPU machine's host CPU, which has no
# Rust toolchain: build the binary elsewhere and pass it as $NABLA).
#   1. the CPU's name and instruction sets, and `nabla bench kernels`
#      (every convolution of the four models, against the measured FMA peak);
#   2. tools/bench_vision.py: ResNet34 and EfficientNet-Lite0 at batch 16,
#      cnn and cnn-bn at batch 32, ResNet34's evaluation at batch 16;
#   3. `nabla bench vision --profile`: where ResNet34's step goes, per layer;
#   4. tools/bench_conv_layers.py: PyTorch's time for the same convolutions.
# Every step's output goes to $OUT/cpu-check/NAME.txt, a summary to
# $OUT/cpu-check/summary.txt; a step that fails is recorded and the run goes on.
#
#   NABLA=/path/to/nabla CPUS=0,1 OUT=/tmp/out bash tools/cpu-check.sh
#   QUICK=1 bash tools/cpu-check.sh     # one short round of each (a dry run)
#
# Both sides are pinned to $CPUS (default 0,1) through the affinity the
# processes inherit; nabla's pool gets one thread per pinned core
# (RAYON_NUM_THREADS), PyTorch two threads (set by the scripts).
set -uo pipefail
cd "$(dirname "$0")/.."
NABLA="${NABLA:-target/release/nabla}"
CPUS="${CPUS:-0,1}"
PY="${PYTHON:-python3}"
OUT="${OUT:-.}/cpu-check"
mkdir -p "$OUT"
: > "$OUT/summary.txt"
export RAYON_NUM_THREADS
RAYON_NUM_THREADS=$(echo "$CPUS" | tr ',' '\n' | grep -c .)
if [ "${QUICK:-0}" = 1 ]; then
  ROUNDS=(--rounds 1 --steps 2 --warmup 1)
else
  ROUNDS=()
fi

# run NAME COMMAND...: the command pinned to $CPUS, its output kept.
run() {
  local name="$1"; shift
  local t0; t0=$(date +%s)
  echo "== $name: $*" | tee -a "$OUT/summary.txt" >&2
  "$PY" -c 'import os, sys
os.sched_setaffinity(0, {int(c) for c in sys.argv[1].split(",")})
os.execvp(sys.argv[2], sys.argv[2:])' "$CPUS" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  tail -n 8 "$OUT/$name.txt" >> "$OUT/summary.txt"
  echo "   exit $rc, $(( $(date +%s) - t0 )) s" | tee -a "$OUT/summary.txt" >&2
}

{
  grep -m1 '^model name' /proc/cpuinfo
  grep -m1 '^cpu family' /proc/cpuinfo
  grep -m1 '^model[[:space:]]*:' /proc/cpuinfo
  grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|avx512[a-z_0-9]*|amx[a-z_0-9]*)$' | tr '\n' ' '
  echo
  echo "pinned to CPUs $CPUS, RAYON_NUM_THREADS=$RAYON_NUM_THREADS, nabla $NABLA"
} | tee -a "$OUT/summary.txt" >&2

run kernels "$NABLA" bench kernels --batch-size 16
run vision-resnet34-effnet "$PY" tools/bench_vision.py --nabla "$NABLA" \
  --models resnet34,efficientnet-lite0 --batch-size 16 "${ROUNDS[@]}"
run vision-cnn "$PY" tools/bench_vision.py --nabla "$NABLA" --models cnn,cnn-bn "${ROUNDS[@]}"
run vision-resnet34-eval "$PY" tools/bench_vision.py --nabla "$NABLA" \
  --models resnet34 --batch-size 16 --eval "${ROUNDS[@]}"
run profile-resnet34 "$NABLA" bench vision --model resnet34 --batch-size 16 --profile
run conv-layers-torch "$PY" tools/bench_conv_layers.py --batch-size 16
echo "wrote $OUT/summary.txt" >&2
