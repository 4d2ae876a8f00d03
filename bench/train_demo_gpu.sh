#!/usr/bin/env bash
# Trains the shipped demo weights on one GPU through the `device` tool, within one 10-minute call:
# an 80-step probe measures the steady-state step time, then `mirage train-demo` runs as many steps (<= 8000) as fit.
# Usage there: bash bench/train_demo_gpu.sh [more train-demo flags]   (needs .whl/ with typer and its deps)
# STEPS=N skips the probe (e.g. for a continuation stage with --init).
set -euo pipefail
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src
nvidia-smi -L
python3 -c "import torch, transformers, scipy; print('torch', torch.__version__, 'transformers', transformers.__version__)"
BUDGET=${BUDGET:-400}  # seconds of training
if [ -z "${STEPS:-}" ]; then
python3 -m mirage train-demo --out /tmp/probe --steps 80 --text-steps 0 --vision-steps 10 --eval-limit 8 --workers 8 --quiet >/dev/null
# the probe times joint steps; the 800 text-only steps cost about a third of one each
STEPS=$(python3 -c "
import json; r=[json.loads(l) for l in open('/tmp/probe/log.jsonl')][-1]
print(min(8000, int($BUDGET / r['sec_per_step'] + 0.6 * 800) // 100 * 100))")
echo "probe: $(tail -1 /tmp/probe/log.jsonl)"
fi
echo "training $STEPS steps"
python3 -m mirage train-demo --out /tmp/demo --steps "$STEPS" --workers 8 --quiet "$@" 2>&1 | tee /tmp/train.log
mkdir -p "$OUT/model"
find /tmp/demo/model -type f ! -name chat_template.jinja -exec cp {} "$OUT/model/" \;  # at most 8 files come back
cp /tmp/demo/log.jsonl "$OUT/"
ls -la "$OUT" "$OUT/model"
