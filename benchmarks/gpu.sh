#!/usr/bin/env bash
# The GPU figures of benchmarks/RESULTS.md in one run (about 6 minutes on one H100/H200).
#   bash benchmarks/gpu.sh [OUTDIR]      # needs torch with CUDA, pycocotools, scipy, tqdm
# Every step has its own time limit, so one slow step cannot eat the others' time.
set -u
out=${1:-gpu-results}; mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}
step() { local t=$1 name=$2; shift 2; echo "=== $name: $*"; timeout "$t" "$@" 2>&1 | tee "$out/$name.txt"; echo "=== $name rc=${PIPESTATUS[0]}"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
$py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/gpu.txt"
step 60  rmpp_cpu_profile      $py benchmarks/train_throughput.py --device cuda --images 64 --batches 8 16
step 60  rmpp_cpu_profile_fp32 $py benchmarks/train_throughput.py --device cuda --images 64 --batches 8 16 --amp off --channels-last off
step 120 rmpp_paper_profile    $py benchmarks/train_throughput.py --device cuda --profile paper --images 32 --batches 8 16
step 60  ae_paper_bf16         $py benchmarks/ae_throughput.py --device cuda --profile paper --batch 16 --steps 10
step 60  ae_paper_fp32         $py benchmarks/ae_throughput.py --device cuda --profile paper --batch 16 --steps 10 --amp off --channels-last off
step 60  asgd_memory_cpu       $py benchmarks/asgd_memory.py --device cuda
step 90  asgd_memory_paper     $py benchmarks/asgd_memory.py --device cuda --profile paper
d=$(mktemp -d)
step 60  synth $py -m rnnpose synth --preset train --num 32 --seed 0 --size 64 --out "$d/syn" --quiet
step 90  torchrun_ae   $py -m torch.distributed.run --nproc_per_node 1 -m rnnpose train ae --profile tiny --data "$d/syn" --out "$d/ae" --device cuda --quiet
step 90  torchrun_rmpp $py -m torch.distributed.run --nproc_per_node 1 -m rnnpose train rmpp --ae "$d/ae" --profile tiny --data "$d/syn" --out "$d/rmpp" --device cuda --quiet
ls "$d/ae" "$d/rmpp" | tee "$out/run_folders.txt"
