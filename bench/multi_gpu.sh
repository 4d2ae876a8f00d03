#!/usr/bin/env bash
# Multi-GPU scaling on the LLaVA-1.5-7B shape (random bf16 weights), on a machine with 2 GPUs:
#   bash bench/multi_gpu.sh OUT_DIR [FIXTURES]
# 1. the single-GPU fixture check (bench/hf_7b_check.py, ScienceQA fixture) on GPU 0;
# 2. sharded condition evaluation and per-question features, 1 rank vs 2 ranks (torchrun), merged rows compared;
# 3. universal pixels, data parallel: 1 rank vs 2 ranks;
# 4. one model split over both GPUs with device_map="auto" vs one GPU (peak memory per GPU from nvidia-smi).
# Every command writes timings.json (model load and work seconds, rank 0's peak memory); this script collects them
# into OUT_DIR/multi_gpu.json. Numbers go to bench/RESULTS.md by hand, with the date, device and commit.
set -uo pipefail
OUT=${1:?OUT_DIR}
FIX=${2:-../shared/fixtures}
W=/tmp/mg
mkdir -p "$OUT" $W
export PYTHONPATH=src OMP_NUM_THREADS=4 NCCL_NVLS_ENABLE=0  # NVLink multicast off (device KINDS.md)
M=hf:$W/llava7b
PY=python

log() { echo "[$(date +%T)] $*"; }

log "build + save the 7B shape"
CUDA_VISIBLE_DEVICES=0 $PY bench/hf_7b_check.py $W/save.json --fixtures "$FIX" --workdir $W --save-only

log "1. single-GPU fixture check (frozen weights)"
CUDA_VISIBLE_DEVICES=0 $PY bench/hf_7b_check.py "$OUT/hf7b_scienceqa.json" --fixtures "$FIX" --workdir $W/fx \
  --only scienceqa --no-qwen --model-dir $W/llava7b 2>&1 | grep -v "Warning\|warn(" | tail -8

EVAL="eval --model $M --benchmark shapes --limit 256 --conditions real,blank --batch-size 32 -q"
FEAT="optimize --model $M --benchmark shapes --limit 32 --input features --steps 20 --early-stop 0 --batch-size 8 -q"
UNI="optimize --model $M --benchmark shapes --limit 48 --train 32 --input pixels --scope universal --steps 10 --batch-size 8 -q"
SPLIT="optimize --model $M --benchmark shapes --limit 8 --input pixels --steps 10 --early-stop 0 --batch-size 4 -q"

run1() { local name=$1; shift; log "$name (1 GPU)"; CUDA_VISIBLE_DEVICES=0 $PY -m mirage "$@" --out $W/$name >/dev/null 2>$W/$name.err || tail -5 $W/$name.err; }
run2() { local name=$1; shift; log "$name (2 ranks)"; $PY -m torch.distributed.run --standalone --nproc-per-node 2 -m mirage "$@" --out $W/$name >/dev/null 2>$W/$name.err || tail -5 $W/$name.err; }

log "2. sharded evaluation and per-question features"
run1 eval1 $EVAL
run2 eval2 $EVAL
run1 feat1 $FEAT
run2 feat2 $FEAT
log "3. universal pixels, data parallel"
run1 uni1 $UNI
run2 uni2 $UNI
log "4. one model over two GPUs (device_map=auto) vs one GPU"
nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits -lms 200 > $W/smi-split1.csv &
SMI=$!
run1 split1 $SPLIT
kill $SMI
nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits -lms 200 > $W/smi-split2.csv &
SMI=$!
log "split2 (device_map=auto over 2 GPUs)"
$PY -m mirage $SPLIT --device-map auto --out $W/split2 >/dev/null 2>$W/split2.err || tail -5 $W/split2.err
kill $SMI

$PY - "$W" "$OUT" <<'EOF'
import json, sys, subprocess, time
from pathlib import Path
w, out = Path(sys.argv[1]), Path(sys.argv[2])
from mirage.runs import read_rows
res = {"date": time.strftime("%Y-%m-%d"), "device": subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True).stdout.split("\n")[0],
       "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(), "parts": {}}
for name in ["eval1", "eval2", "feat1", "feat2", "uni1", "uni2", "split1", "split2"]:
    d = w / name
    t = json.loads((d / "timings.json").read_text()) if (d / "timings.json").exists() else None
    rows = read_rows(d / "results.jsonl") if (d / "results.jsonl").exists() else []
    res["parts"][name] = {"timings": t, "rows": len(rows)}
for a, b in [("eval1", "eval2"), ("feat1", "feat2"), ("uni1", "uni2")]:
    key = lambda r: (r["source"], r["question_id"])
    ra = sorted(read_rows(w / a / "results.jsonl"), key=key) if (w / a / "results.jsonl").exists() else []
    rb = sorted(read_rows(w / b / "results.jsonl"), key=key) if (w / b / "results.jsonl").exists() else []
    res["parts"][b]["same_preds_as_1_rank"] = [(r["question_id"], r["source"], r["pred"]) for r in ra] == \
        [(r["question_id"], r["source"], r["pred"]) for r in rb]
    res["parts"][b]["max_prob_diff"] = max((abs(x - y) for r1, r2 in zip(ra, rb) for x, y in zip(r1["probs"], r2["probs"])), default=None)
for s in ["split1", "split2"]:
    peak = {}
    for line in (w / f"smi-{s}.csv").read_text().splitlines():
        i, m = [int(x) for x in line.split(",")]
        peak[i] = max(peak.get(i, 0), m)
    res["parts"][s]["nvidia_smi_peak_mib"] = peak
(out / "multi_gpu.json").write_text(json.dumps(res, indent=2))
print(json.dumps(res, indent=1))
EOF
