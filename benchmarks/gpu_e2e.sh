#!/usr/bin/env bash
# The paper profile end to end on one GPU, on a small synthetic set at 512 px: AE training,
# RMPP training (lock-step batch 8), prediction and COCO evaluation with both methods.
#   bash benchmarks/gpu_e2e.sh [WORKDIR]     # about 3 minutes on one H200
set -euo pipefail
d=${1:-$(mktemp -d)}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}
t() { local s=$SECONDS; "$@"; echo "[$((SECONDS - s)) s] $*"; }
t $py -m rnnpose synth --preset train --num 64 --seed 0 --size 512 --out "$d/train" --quiet
t $py -m rnnpose synth --preset occluded --num 32 --seed 1 --size 512 --out "$d/occ" --quiet
t $py -m rnnpose train ae --profile paper --data "$d/train" --out "$d/ae" --epochs 2 --device cuda --quiet
t $py -m rnnpose train rmpp --profile paper --ae "$d/ae" --data "$d/train" --out "$d/rmpp" --epochs 1 --batch-size 8 --device cuda --quiet
t $py - "$d" <<'PY'
import sys
from rnnpose.evaluate import evaluate_keypoints
from rnnpose.predict import predict_run
d = sys.argv[1]
for method in ("rmpp", "ae"):
    gt, res = predict_run(f"{d}/rmpp", f"{d}/occ", method=method, device="cuda", quiet=True)
    m = evaluate_keypoints(gt, res)
    print(method, len(res), "people;", {k: round(v, 2) for k, v in m.items()})
PY
tail -n 2 "$d/ae/log.jsonl" | cut -c1-200
tail -n 1 "$d/rmpp/log.jsonl" | cut -c1-300
