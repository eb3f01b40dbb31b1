#!/usr/bin/env bash
# Issue 28's table: every clip, before (flow.still=0) and now (the video preset), measured by
# coherence_bench.py against the clips' exact motion, with the flow-free stillness columns.
#   bash scripts/stillness_clips.sh [WORKDIR]     (about 25 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/stillness}
mkdir -p "$work"
py=${PYTHON:-.venv/bin/python}
make() { [ -f "$work/$1.mp4" ] || $py scripts/make_handheld_clip.py --out "$work/$1.mp4" "${@:2}" >/dev/null; }
still="--shake 0 --noise 3 --flicker 0 --crf 12"
make cup320 $still --seconds 2 --size 320x240
make cup160 $still --seconds 2 --size 160x120
make street $still --seconds 4 --size 192x144 --walkers 4
make sky $still --seconds 2 --size 160x120 --photo rocket
make handheld --seconds 4 --size 320x180
make tripod --seconds 10 --size 160x90 --shake 0
make fast --shake 2.5 --photo chelsea --fps 24 --size 160x90
make rocket --photo rocket --shake 0.25 --size 640x480 --fps 26.78
cp samples/pan.mp4 samples/pan.motion.json "$work/"
bench() { $py scripts/coherence_bench.py "$work/$1.mp4" --batch 1 --metric-flow truth "${@:2}" | grep '^| [a-z]'; }
for clip in cup320 cup160 street sky pan handheld tripod fast rocket; do
  size=()
  [ "$clip" = rocket ] && size=(--size 160x120)
  echo "== $clip"
  bench $clip "${size[@]}" --modes independent,consistent
  bench $clip "${size[@]}" --modes consistent --set flow.still=0 | sed 's/^| consistent/| before (still 0)/'
done
