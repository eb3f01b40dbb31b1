#!/usr/bin/env bash
# Set everything up (scripts/setup.sh) and render the bundled sample clip with the default video
# preset: out/pan_dream.mp4 (with its audio) and out/pan_dream_strip.jpg (a strip of frames).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out
.venv/bin/dream render samples/pan.mp4 -p video -o out/pan_dream.mp4 --overwrite "$@"
.venv/bin/python scripts/frame_strip.py out/pan_dream.mp4 out/pan_dream_strip.jpg
echo "done: out/pan_dream.mp4 and out/pan_dream_strip.jpg"
