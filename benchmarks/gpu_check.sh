#!/usr/bin/env bash
# The CUDA path, checked on one GPU in under 8 minutes (run it from the repository root):
#   1. the CUDA tests (skipped on a CPU machine);
#   2. train images/s and peak memory per model at 129 px, bf16 autocast, lean and plain, with
#      channels_last off and on (benchmarks/memory.py; peak = torch.cuda.max_memory_allocated);
#   3. the memory table on CUDA against the CPU fake-tensor estimate (run_study.py models --memory);
#   4. a 2-trial, 2-epoch study on the GPU (129-px Model I crops, MLflow in SQLite), then its
#      per-epoch throughput, micro-batch and memory estimate from MLflow.
# Everything it prints also goes to $OUT (default out/gpu_check). Each step has its own timeout,
# so one that hangs cannot eat the others' time.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu_check}
mkdir -p "$OUT"
export TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1 RAY_DEDUP_LOGS=0
step() { echo; echo "== $1 ($(date +%T))"; }

step "device"
python - <<'PY' 2>&1 | tee "$OUT/device.txt" || exit 2
import torch
assert torch.cuda.is_available(), "no CUDA device: this script is for a GPU machine"
p = torch.cuda.get_device_properties(0)
print(f"{p.name}, {p.total_memory / 2**30:.1f} GiB, capability {p.major}.{p.minor}, "
      f"bf16 {torch.cuda.is_bf16_supported()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
PY

step "CUDA tests"
timeout 150 python -m pytest -q -s -p no:cacheprovider tests/test_lensnets_models.py tests/test_study_memory.py \
    -k cuda 2>&1 | tail -15 | tee "$OUT/tests.txt"

MODELS=trivial:1,C4:1,C8:0.5,C8:1,D4:1,D8:0.5,D8:1,resnet18:1
for layout in "" "--channels-last"; do
    step "train speed and peak memory, bf16, batch 64 ${layout:-(NCHW)}"
    timeout 150 python benchmarks/memory.py --device cuda --bf16 --batch 64 --steps 5 --threads 8 \
        --models "$MODELS" $layout 2>&1 | grep -v Warning | tee -a "$OUT/speed_memory.txt"
done

step "memory table: CUDA measured vs CPU fake-tensor estimate (bf16, batch 64, fields widths 0.5 and 1)"
timeout 90 python run_study.py models --memory --device cuda --input-size 129 --batch 64 --widths 0.5,1 \
    --json > "$OUT/memory_cuda.json" 2>"$OUT/memory_cuda.err"
timeout 90 python run_study.py models --memory --input-size 129 --batch 64 --widths 0.5,1 \
    --json > "$OUT/memory_cpu_estimate.json" 2>"$OUT/memory_cpu.err"
python - "$OUT" <<'PY' | tee "$OUT/memory_compare.txt"
import json, sys
out = sys.argv[1]
try:
    cuda = json.load(open(f"{out}/memory_cuda.json")); cpu = json.load(open(f"{out}/memory_cpu_estimate.json"))
except Exception as err:
    sys.exit(f"memory tables missing ({err}); see {out}/memory_*.err")
print("| model | width | mode | CUDA peak GiB | estimate GiB | CUDA / estimate |\n|---|---|---|---|---|---|")
for a, b in zip(cuda, cpu):
    peak, estimate = a["peak"], b["peak"]
    shown = "OOM" if peak is None else f"{peak / 2**30:.2f}"
    ratio = "-" if peak is None else f"{peak / estimate:.2f}"
    print(f"| {a['model']} | {a['width']} | {a['mode']} | {shown} | {estimate / 2**30:.2f} | {ratio} |")
PY

step "a 2-trial, 2-epoch study on the GPU"
timeout 240 python run_study.py tune --name gpu-check \
    --set data.path="$OUT/data" --set data.simulate.preset=model_i --set data.simulate.per_class=300 \
    --set data.image_size=129 --set data.crop_fraction=0.8533 \
    --set 'search.groups=[C8, D4]' --set 'search.widths=[0.5]' --set 'search.batch_sizes=[64]' \
    --set train.max_epochs=2 --set tune.trials=2 --set tune.max_concurrent=2 --set tune.grace_period=1 \
    --set tune.cpus_per_trial=4 --set tune.gpus_per_trial=0.5 \
    --set tune.storage_path="$OUT/runs" --set mlflow.tracking_uri="sqlite:///$OUT/mlflow.db" \
    2>&1 | grep -v "Warning\|warn(" | tail -25 | tee "$OUT/study.txt"
python - "$OUT" <<'PY' | tee -a "$OUT/study.txt"
import sys
from mlflow.tracking import MlflowClient
client = MlflowClient(f"sqlite:///{sys.argv[1]}/mlflow.db")
exp = client.get_experiment_by_name("gpu-check")
for run in client.search_runs([exp.experiment_id], "tags.role = 'trial'"):
    m = run.data.metrics
    print(run.info.run_name, run.data.tags.get("status"), {k: round(m[k], 3) for k in sorted(m)
          if k in ("train_images_per_s", "micro_batch", "memory_estimate_gib", "memory_budget_gib",
                   "val_auc_micro")}, run.data.tags.get("failure_reason", ""))
PY
step "done"
