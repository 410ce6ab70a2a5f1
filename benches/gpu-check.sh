#!/usr/bin/env bash
# The device check of the GPU spectral path (issue 12), for one bare CUDA machine in <= 8 minutes:
# install the project, run the CUDA tests (pytest -m gpu), then time qrh (fused Triton convolution),
# qrh-torchfft (the same layer on torch.fft), hyena, SDPA attention and nn.MultiheadAttention at
# N = 1K, 4K, 16K, 64K, width 768, batch 8, bf16. Everything lands in $OUT (default ./gpu-check):
# env.txt, install.log, pytest-gpu.log, long-context/{results.csv,slopes.csv,time.png,memory.png},
# long-context.log, summary.txt. Each step has its own timeout, so the script ends in time even
# when a step hangs; a failed step is recorded in summary.txt and the next step still runs.
#
# Installing: the device machine reaches no package registry, and its image already holds torch
# (CUDA), triton, numpy, tqdm, matplotlib, safetensors, pytest and hypothesis. So the project comes
# as a prebuilt abi3 wheel, made beforehand on a machine with Rust:
#     maturin build --release -o .whl        # writes .whl/qtransformers-*-abi3-*.whl (git-ignored)
# and carried along with the checkout (the device tool: carry=[".whl"]); it is installed without
# dependencies and without an index. The GPU tests need none of the PyPI-only test extras.
#
# Step limits: install 200 s, CUDA tests 120 s (they compile about 16 kernel variants), bench 150 s: <= 470 s.
# Usage: bash benches/gpu-check.sh    (not run yet: no GPU has been lent to this project so far)
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-check}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
start=$(date +%s)

step() {  # step NAME TIMEOUT_S LOG CMD...: run CMD with a timeout, log it, record its exit status
    local name=$1 limit=$2 log=$3
    shift 3
    local t0=$(date +%s)
    timeout "$limit" "$@" > "$log" 2>&1
    local rc=$?
    echo "$name: rc=$rc in $(( $(date +%s) - t0 ))s (limit ${limit}s), log $log" | tee -a "$SUMMARY"
    return $rc
}

{
    date -u
    nvidia-smi || true
    python3 --version
    cargo --version 2>/dev/null || echo "cargo: not installed"
} > "$OUT/env.txt" 2>&1

wheel=$(ls .whl/qtransformers-*.whl 2>/dev/null | head -n 1)
if [ -z "$wheel" ]; then
    echo "install: no prebuilt wheel in .whl/ (see the header of this script)" | tee -a "$SUMMARY"
    exit 1
fi
step install 200 "$OUT/install.log" python3 -m pip install --no-input --no-index --no-deps "$wheel" \
    || { tail -n 30 "$OUT/install.log"; exit 1; }

python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', \
triton.__version__, torch.cuda.get_device_name(0))" >> "$OUT/env.txt" 2>&1

# the CUDA tests: the compiled kernels (fused convolution, cuFFT + fused multiply, QRH filter+rotation)
# against float64 references in float32 and bfloat16
step pytest-gpu 120 "$OUT/pytest-gpu.log" python3 -m pytest -q -m gpu tests/test_fftconv_triton.py \
    tests/test_triton_spectral.py
tail -n 15 "$OUT/pytest-gpu.log"

# nn.MultiheadAttention stops at 16K: its float causal mask is N x N (64K: 8 GiB in bf16 per call)
step long-context 150 "$OUT/long-context.log" python3 -m qtransformers bench long-context --device cuda --dtype bfloat16 \
    --batch 8 --dim 768 --heads 8 --lengths 1024,4096,16384,65536 \
    --only qrh,qrh-torchfft,hyena,attention,nn.MultiheadAttention --mha-max-n 16384 \
    --repeats 5 --max-seconds 10 --no-progress --out "$OUT/long-context"
cat "$OUT/long-context.log"

echo "total: $(( $(date +%s) - start ))s" | tee -a "$SUMMARY"
