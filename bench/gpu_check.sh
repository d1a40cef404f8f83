#!/usr/bin/env bash
# The device checks, as one prepared run on a lent GPU machine (its image has torch and most of the
# scientific stack; the rest travels as wheels made here by bench/gpu_wheels.sh). From the device tool:
#   run(command="bash bench/gpu_check.sh", carry=[".whl"], timeout_s=540)
# Writes gpu.txt, tests.log, times.log and speed.log under $OUT (or ./gpu_out). Each step has its own
# time limit, so a slow one still leaves the others' results. About 5-7 minutes on an H100.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } \
    2>&1 | tee "$OUT/gpu.txt"
# the CUDA tests (skipped without a GPU) and the sampler's CUDA-against-CPU test
timeout 240 python3 -m pytest -q -p no:cacheprovider -o addopts="" -rs tests/test_cuda.py \
    "tests/diffusion/test_samplers.py::test_cuda_matches_cpu_with_a_cpu_generator" 2>&1 | tee "$OUT/tests.log"
# in-process times after a warm-up, then whole processes (start-up included; the issue's targets)
timeout 180 python3 bench/gpu_times.py --device cuda --repeats 3 2>&1 | tee "$OUT/times.log"
timeout 150 python3 bench/speed.py --repeats 2 --no-write 2>&1 | tee "$OUT/speed.log"
echo "done: $(ls "$OUT")"
