#!/usr/bin/env bash
# Install llama-cpp-python 0.3.36 into the given Python, compiled for this CPU's instruction set
# but never with AMX: a -march=native build enables AMX tile instructions on CPUs that report
# them, and the kernels of these machines refuse them (SIGILL in the first batched matmul).
# The wheel is built once per variant and kept in ~/.cache/stillhouse/wheels (pip's own wheel
# cache ignores CMAKE_ARGS, so it could hand back a wheel built for another variant).
set -euo pipefail
python=${1:?usage: install-llama-cpp.sh PYTHON}
version=0.3.36
flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
args="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
variant=avx2
if [[ $flags == *avx512f* && $flags == *avx512bw* && $flags == *avx512vl* && $flags == *avx512_vnni* && $flags == *avx512vbmi* && $flags == *avx512_bf16* ]]; then
  args="$args -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON"
  variant=avx512
fi
if [[ $flags != *avx2* ]]; then
  echo "install-llama-cpp.sh: this CPU has no AVX2; stillhouse's llama.cpp build needs it." >&2
  exit 1
fi
wheels="${STILLHOUSE_HOME:-$HOME/.cache/stillhouse}/wheels/llama-cpp-python-$version-$variant"
if ! ls "$wheels"/llama_cpp_python-$version-*.whl >/dev/null 2>&1; then
  echo "building llama-cpp-python $version ($variant); this takes several minutes once"
  mkdir -p "$wheels.partial"
  CMAKE_ARGS="$args" "$python" -m pip wheel -q --no-cache-dir --no-deps \
    "llama-cpp-python==$version" -w "$wheels.partial"
  rm -rf "$wheels" && mv "$wheels.partial" "$wheels"
fi
"$python" -m pip install -q --force-reinstall --no-deps "$wheels"/llama_cpp_python-$version-*.whl
"$python" -m pip install -q "llama-cpp-python[server]==$version" --find-links "$wheels"
echo "llama-cpp-python $version ($variant) installed"
