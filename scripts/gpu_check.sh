#!/usr/bin/env bash
# Every GPU check and timing in one go, for a lent GPU machine that has torch and OpenCV but no
# ffmpeg binary, no registry access and none of our small wheels. Bring them in .gpu/ (ignored
# by git; see scripts/BENCHMARKS.md for how it is packed):
#   .gpu/ffmpeg.xz                     imageio-ffmpeg's static binary, xz -9
#   .gpu/mobilenet_v2-b0353104.pth     the offline MobileNetV2 weights
#   .gpu/whl/*.whl                     pydantic, pydantic-core, annotated-types,
#                                      typing-inspection, ffmpeg-python, future,
#                                      av==18.1.0 (PyAV: the timestamp index and decoding)
# Results go to $OUT (bench table and log).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT" /tmp/bin /tmp/site /tmp/torch/hub/checkpoints
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/bin:$PATH TORCH_HOME=/tmp/torch DREAM_OFFLINE=1
export PYTHONUNBUFFERED=1
xz -dc .gpu/ffmpeg.xz > /tmp/bin/ffmpeg && chmod +x /tmp/bin/ffmpeg
cp .gpu/mobilenet_v2-b0353104.pth /tmp/torch/hub/checkpoints/
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, cv2; print('torch', torch.__version__, 'cv2', cv2.__version__)" | tee -a "$OUT/gpu.txt"
nproc | tee -a "$OUT/gpu.txt"
# 40 s with a 24-frame warm-up: 10 segments, a batch like a long render's (video.batch: auto)
time python3 scripts/make_sample_clip.py --out /tmp/clip1080.mp4 --seconds ${SECONDS_CLIP:-40} --size 1920x1080
# the bench reports as it goes; BENCH_LIMIT stops it (the ablation runs last) with time to spare
timeout ${BENCH_LIMIT:-420} python3 scripts/bench.py /tmp/clip1080.mp4 -p video --set video.warmup=24 \
  --naive-frames 48 ${BENCH_ARGS:---ablation --cap4k --profile} --out "$OUT/bench_1080p.md" 2>&1 | tee "$OUT/bench_log.txt"
