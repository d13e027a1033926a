#!/usr/bin/env bash
# Installs cortexzoo and everything it needs into ./.venv (created if missing).
# Versions are pinned in requirements-lock.txt so that a new machine resolves nothing.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch first and pinned (the lock leaves it out): the version the tests ran with. On Linux
# PyPI's wheel brings its CUDA libraries (about 3 GB) even where there is no GPU.
.venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
.venv/bin/python -m pip install -q -r requirements-lock.txt
.venv/bin/python -m pip install -q --no-deps -e .
.venv/bin/python -c "import cortexzoo, torch, ray; print('cortexzoo', cortexzoo.__version__, 'torch', torch.__version__, 'ray', ray.__version__)"
