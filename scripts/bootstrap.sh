#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv.
#
#   bash scripts/bootstrap.sh [EXTRAS]      e.g. EXTRAS=test or test,napari
#
# torch: a torch that the chosen Python already has (a GPU build, say) is kept: the venv then sees
# the system site-packages. Otherwise the tested pin is installed (CPU build where one is offered).
# Idempotent: a second run with the same pyproject.toml and extras does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRAS="${1:-test}"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
TORCH_PIN="${TORCH_PIN:-torch==2.13.0}"
STAMP="$VENV/.ldm-med-stamp"
want="$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16) $EXTRAS"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    if "$PYTHON" -c "import torch" >/dev/null 2>&1; then
        echo "bootstrap: keeping the torch $("$PYTHON" -c 'import torch; print(torch.__version__)') that $PYTHON already has"
        "$PYTHON" -m venv --system-site-packages "$VENV"
    else
        "$PYTHON" -m venv "$VENV"
    fi
fi

PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
    echo "bootstrap: installing $TORCH_PIN"
    "${PIP[@]}" "$TORCH_PIN"
fi
echo "bootstrap: installing ldm-med[$EXTRAS] (editable)"
"${PIP[@]}" -e ".[$EXTRAS]"
echo "$want" > "$STAMP"
