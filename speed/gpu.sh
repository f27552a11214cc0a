#!/usr/bin/env bash
# Every GPU measurement of issue 4 in one go, about 7.5 minutes on an H200 (2026-12-04):
#   OUT=/some/dir speed/gpu.sh
# JSON lines go to $OUT/bench.jsonl (see speed/bench.py for what each line holds), the card to $OUT/gpu.txt.
# Each command has its own time limit, so a slow one costs only its own lines; speed/bench.py
# writes every line as soon as it is measured.
set -u
cd "$(dirname "$0")/.."
out=${OUT:-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
# A fresh compile cache, so warmup_s is the cold compile a first run pays.
TORCHINDUCTOR_CACHE_DIR=$(mktemp -d)
export TORCHINDUCTOR_CACHE_DIR
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
common=(--device cuda --dtype bf16 --batch 32 --seq 128 --warmup 3 --steps 20 --repeats 5 --out "$out/bench.jsonl")
# 1. the main target: bert-base -> 6 layers against the baseline's eager step; MFU; loss share; recompiles
timeout 200 python3 speed/bench.py --teacher base --student-layers 6 --variants compiled,eager --baseline-variants eager "${common[@]}"
# 2. the 6-layer / 384 teacher -> 3 layers, against both baseline variants
timeout 200 python3 speed/bench.py --teacher small --student-layers 3 --variants compiled,eager --baseline-variants eager,compiled "${common[@]}"
# 3. bert-base with CUDA graphs, against the baseline's compiled step
timeout 150 python3 speed/bench.py --teacher base --student-layers 6 --variants cudagraphs --baseline-variants compiled "${common[@]}"
echo "done: $out/bench.jsonl"
