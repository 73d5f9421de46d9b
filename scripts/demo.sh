#!/usr/bin/env bash
# `make demo`: the prune-then-unlearn pipeline on a capped Fashion-MNIST grid
# (scripts/grids/fashionmnist_demo.json), the data got the way `make test` gets it: Debian's
# dataset-fashion-mnist (installed with apt-get when this is a root shell), else a download
# into ./data by torchvision; without either, the bundled digits (scripts/grids/digits.json)
# and one line saying why. Usage: scripts/demo.sh PYTHON OUT_DIR
set -euo pipefail
PY=${1:-python3}
OUT=${2:-runs/demo}
available() {  # prints the reason and fails when Fashion-MNIST cannot be had
    "$PY" - <<'PYTHON'
import logging, sys
from dataset import load_fashion_mnist
from errors import UserError
logging.disable(logging.INFO)
try:
    load_fashion_mnist("./data")
except UserError as err:
    print(err)
    sys.exit(1)
PYTHON
}
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's dataset-fashion-mnist for the demo" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || true
fi
if why=$(available); then
    grid=scripts/grids/fashionmnist_demo.json
else
    echo "note: the demo runs on the bundled digits instead of Fashion-MNIST: $why" >&2
    grid=scripts/grids/digits.json
    OUT=$OUT-digits
fi
"$PY" scripts/sweep.py "$grid" --out "$OUT" --jobs 2
"$PY" scripts/summarize.py "$OUT"
