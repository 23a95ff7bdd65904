#!/usr/bin/env bash
# nabla on a real GPU, in one go (under 10 minutes on a warm build):
#   1. builds `nabla --features wgpu` (release), reusing $CARGO_TARGET_DIR or
#      ./target when a build directory came along with the tree, or takes the
#      binary at $NABLA (built elsewhere, for a machine without Rust or network);
#   2. prints the backends and adapters (`nabla devices`);
#   3. one epoch of `nabla vision train --device wgpu` on the face-mask photos
#      at 128 px, when they are at $NABLA_FACE_MASK (or data/face-mask);
#   4. `nabla bench vision --device wgpu` for cnn, cnn-bn, resnet34 and
#      efficientnet-lite0 at batch 32 and 64 (training steps at 128 px), the
#      same work in PyTorch on CUDA when python3 has torch with a GPU
#      (tools/bench_vision.py --device wgpu), and nabla on the CPU at batch 32;
# and writes every result into one JSON file, $OUT/gpu-check.json (default
# ./gpu-check.json). A step that fails is recorded with its exit status and
# the run goes on.
#
#   bash tools/gpu-check.sh                 # OUT=. by default
#   OUT=/tmp/gpu NABLA_FACE_MASK=/data/face-mask bash tools/gpu-check.sh
#   PROFILE=dev MODELS=cnn BATCHES=4 STEPS=1 bash tools/gpu-check.sh   # a dry run on lavapipe
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-.}"
mkdir -p "$OUT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
DATA="${NABLA_FACE_MASK:-data/face-mask}"
STEPS="${STEPS:-10}"
MODELS="${MODELS:-cnn cnn-bn resnet34 efficientnet-lite0}"
BATCHES="${BATCHES:-32 64}"
PROFILE="${PROFILE:-release}"   # `dev` reuses a debug build (a dry run)
BIN_DIR="$PROFILE"; [ "$PROFILE" = dev ] && BIN_DIR=debug
results="$OUT/gpu-check-logs"
rm -rf "$results" && mkdir -p "$results"
: > "$results/steps.jsonl"
start=$(date +%s)

# gpu-check.json is rewritten after every step and on exit, so a run cut
# short (a time limit) still leaves what it measured; logs stay beside it.
write_json() {
python3 - "$results" "$OUT/gpu-check.json" "$start" <<'PY'
import json, os, sys, time
results, out, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
steps = [json.loads(l) for l in open(os.path.join(results, "steps.jsonl"))]
doc = {"written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
       "total_seconds": round(time.time() - start, 1),
       "nvidia_smi": (open(os.path.join(results, "nvidia.out")).read().strip()
                      if os.path.exists(os.path.join(results, "nvidia.out")) else ""),
       "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), ""),
       "steps": []}
for s in steps:
    name = s["step"]
    stdout = os.path.join(results, name + ".out")
    try:
        s["json"] = json.load(open(stdout))
        del s["output"]
    except (OSError, ValueError):
        pass
    doc["steps"].append(s)
tmp = out + ".tmp"
with open(tmp, "w") as f:
    json.dump(doc, f, indent=2)
os.replace(tmp, out)
PY
}
trap 'write_json; echo "wrote $OUT/gpu-check.json (logs in $results)" >&2' EXIT

record() { # record NAME FILE RC SECONDS
  printf '{"step": "%s", "rc": %s, "seconds": %s, "output": %s}\n' "$1" "$3" "$4" \
    "$(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()[-4000:]))' "$2")" \
    >> "$results/steps.jsonl"
}

run_step() { # run_step NAME COMMAND...
  local name="$1"; shift
  local t0; t0=$(date +%s.%N)
  echo "== $name: $*" >&2
  "$@" > "$results/$name.out" 2> "$results/$name.err"
  local rc=$?
  local t1; t1=$(date +%s.%N)
  cat "$results/$name.out" "$results/$name.err" > "$results/$name.log"
  tail -n 3 "$results/$name.log" >&2
  record "$name" "$results/$name.log" "$rc" "$(python3 -c "print(round($t1 - $t0, 2))")"
  write_json
  return $rc
}

if [ -z "${NABLA:-}" ]; then
  run_step build cargo build --profile "$PROFILE" -q -p nabla-cli --features wgpu || {
    echo "the build failed; see $OUT/gpu-check.json" >&2
  }
  NABLA="$CARGO_TARGET_DIR/$BIN_DIR/nabla"
fi
torch_cuda=0
python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null && torch_cuda=1
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
    > "$results/nvidia.out" 2>&1 || true
else
  echo "no nvidia-smi" > "$results/nvidia.out"
fi
run_step devices "$NABLA" devices --json

if [ -d "$DATA" ]; then
  run_step train-wgpu "$NABLA" vision train --device wgpu --data "$DATA" --model cnn-bn \
    --epochs 1 --image-size 128 --out "$results/run" --overwrite --json
else
  echo "no face-mask photos at $DATA: the training epoch is skipped" >&2
fi

for model in $MODELS; do
  for batch in $BATCHES; do
    run_step "bench-wgpu-$model-$batch" "$NABLA" bench vision --device wgpu --model "$model" \
      --batch-size "$batch" --steps "$STEPS" --json
    [ "$torch_cuda" = 1 ] && run_step "bench-torch-cuda-$model-$batch" python3 tools/bench_vision.py \
      --torch-only "$model" --device wgpu --batch-size "$batch" --steps "$STEPS" --warmup 2
  done
  run_step "bench-cpu-$model-32" "$NABLA" bench vision --device cpu --model "$model" \
    --batch-size 32 --steps 3 --warmup 1 --json
done


