#!/usr/bin/env bash
# Issue 29's real run on a GPU machine, which has no ../shared and no internet: STS-B, all-MiniLM-L6-v2 taken as
# fp16 (half the bytes a device call may carry; load_bert widens it to fp32), the teacher fine-tuned by the study's
# recipe (experiments/recipe.sh study_flags), then ksm-soft students, compile on (run.py's CUDA default).
# The CPU's same runs: experiments/logs/study/stsb (ksm-soft, seeds 1-5). Results of 2026-12-04: speed/BENCHMARKS.md.
#   speed/gpu_e2e.sh prepare     # here: fills .gpu/ (git-ignored) from ../shared and
#                                # weights/minilm-l6 (python weights/fetch.py minilm-l6 weights/minilm-l6)
#   speed/gpu_e2e.sh             # there, with .gpu carried: the runs into out/e2e, their small files and the
#                                # console log into $OUT (SEEDS, default 1,2,3; BUDGET, seconds, default 400;
#                                # GRAPHS=1 adds run.py --cuda-graphs, into out/e2e-graphs)
set -u
cd "$(dirname "$0")/.."
if [[ ${1:-} == prepare ]]; then
  set -e
  mkdir -p .gpu/bench .gpu/e2e/glue/STS-B .gpu/e2e/minilm-l6  # git-ignored (.gitignore): a device call carries it
  shared=${KD_SHARED:-../shared}
  cp "$shared/bench/hf_kd_baseline.py" .gpu/bench/  # for speed/gpu.sh: KD_BASELINE=.gpu/bench/hf_kd_baseline.py
  cp "${KD_GLUE_DIR:-$shared/data/glue}"/STS-B/{train,dev}.tsv .gpu/e2e/glue/STS-B/
  cp weights/minilm-l6/{config.json,tokenizer.json,tokenizer_config.json,special_tokens_map.json,vocab.txt} \
     .gpu/e2e/minilm-l6/
  python -c "
from safetensors.torch import load_file, save_file
t = load_file('weights/minilm-l6/model.safetensors')
save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in t.items()},
          '.gpu/e2e/minilm-l6/model.safetensors', metadata={'format': 'pt'})"
  du -sh .gpu
  exit
fi
out=${OUT:-out/e2e-files}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 KD_GLUE_DIR=.gpu/e2e/glue
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch, tokenizers, safetensors, numpy
print(torch.__version__, tokenizers.__version__, safetensors.__version__, numpy.__version__)" | tee -a "$out/gpu.txt"
name=e2e${GRAPHS:+-graphs}  # its own folder: in the other's, run.py --resume would reuse the finished runs
source experiments/recipe.sh
study_flags stsb "out/$name" .gpu/e2e/minilm-l6
timeout "${BUDGET:-400}" python3 run.py "${STUDY[@]}" ${GRAPHS:+--cuda-graphs} --method ksm-soft \
  --seeds "${SEEDS:-1,2,3}" 2>&1 | tee "$out/$name.log"
echo "exit: ${PIPESTATUS[0]}" | tee -a "$out/$name.log"
find "out/$name" \( -name '*.json' -o -name '*.jsonl' -o -name '*.md' \) -print | tar czf "$out/$name.tgz" -T -
