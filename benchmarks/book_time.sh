#!/usr/bin/env bash
# Wall time of a cold `make book` on a fresh clone (set-up, every notebook, HTML), then of a
# rebuild from its cache (issue 8's targets: cold <= 45 min on 2 cores for the cpu profile,
# cached <= 3 min).
#   bash benchmarks/book_time.sh [PROFILE] [CLONE_DIR]     # defaults: cpu, a new temp folder
# Run it alone: a second heavy process on 2 cores slows both several-fold.
set -euo pipefail
profile=${1:-cpu}
repo=$(git rev-parse --show-toplevel)
dir=${2:-$(mktemp -d)/rnnpose}
git clone -q "$repo" "$dir"
cd "$dir"
t0=$(date +%s)
make book PROFILE="$profile" >cold.log 2>&1 || { echo "cold build failed: $dir/cold.log"; exit 1; }
t1=$(date +%s)
make book PROFILE="$profile" >cached.log 2>&1 || { echo "rebuild failed: $dir/cached.log"; exit 1; }
t2=$(date +%s)
echo "profile $profile, $(nproc) cores, commit $(git rev-parse --short HEAD)"
echo "cold build (set-up included): $(( (t1 - t0) / 60 )) min $(( (t1 - t0) % 60 )) s"
echo "rebuild from the cache:       $(( (t2 - t1) / 60 )) min $(( (t2 - t1) % 60 )) s"
