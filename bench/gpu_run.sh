#!/usr/bin/env bash
# The GPU benchmarks in one call on a lent GPU machine that has torch and timm but not fastai.
# Carry .whl (bench/README.md says how to fill it); results and logs go to $OUT, else bench/results.
# Usage: bash bench/gpu_run.sh [train_bench.py options, e.g. --precision bf16 fp16]
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
out=${OUT:-bench/results}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, timm, fastai; print('torch', torch.__version__, 'timm', timm.__version__, 'fastai', fastai.__version__)"
# plain grep holds its output back until exit: a run killed at its limit would show nothing
quiet() { grep --line-buffered -v -i -e warn -e deprecat; }
[ "${GPU_CHECK:-1}" = 0 ] || (python3 bench/gpu_check.py && python3 bench/gpu_check.py --channels-last) 2>&1 | quiet | tee "$out/gpu_check.log"
BENCH_WATCHDOG=420 timeout 440 python3 bench/train_bench.py --scale full --cores 4 "$@" 2>&1 | quiet | tee "$out/train_bench.log"
[ "$out" = bench/results ] || cp bench/results/*gpu*.json "$out/" 2>/dev/null
