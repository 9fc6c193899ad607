#!/usr/bin/env bash
# usage: scripts/triton_env.sh [DIR]   (make triton-env; DIR defaults to .triton-env)
#
# A real Triton Inference Server for tests/export/test_triton_live.py, in a venv of its own: the
# server inside the nvidia-pytriton wheel (Python backend only, runs on a CPU) and what its
# Python-backend stub imports (numpy < 2: with numpy 2 every response fails; onnxruntime for the
# graph models). Not salkit's venv: the wheel would pin numpy < 2 for all of salkit.
# DIR/.ready is written last; the test skips, saying so, while it is missing.
set -euo pipefail
dir=${1:-.triton-env}
python=${PYTHON:-python3}
pip=(-m pip install --quiet --disable-pip-version-check)

rm -f "$dir/.ready"
"$python" -m venv --clear "$dir"
"$dir/bin/python" "${pip[@]}" "numpy<2" onnxruntime
# --no-deps: the server binary is all the tests use; the wheel's Python client stays out.
"$dir/bin/python" "${pip[@]}" --no-deps "nvidia-pytriton==0.7.0"
"$dir/bin/python" -c 'import numpy, onnxruntime; assert numpy.__version__ < "2", numpy.__version__'
ls "$dir"/lib/python3.*/site-packages/pytriton/tritonserver/bin/tritonserver > /dev/null
touch "$dir/.ready"
echo "Triton server environment ready in $dir"
