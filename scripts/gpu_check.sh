#!/usr/bin/env bash
# Every GPU check and timing in one go, for a lent GPU machine that has torch and OpenCV but no
# ffmpeg binary, no registry access and none of our small wheels. Bring them in .gpu/ (ignored
# by git; carried with the call), packed to fit the 64 MiB a call may carry:
#   .gpu/ffmpeg.xz                     imageio-ffmpeg 0.6.0's static ffmpeg 7.0.2, xz -6
#   .gpu/av.tar.xz                     the av==18.1.0 wheel's contents (PyAV), as a tar.xz
#   .gpu/mobilenet_v2-b0353104.pth     the offline MobileNetV2 weights rounded to fp16
#   .gpu/whl/*.whl                     pydantic, pydantic-core, annotated-types,
#                                      typing-inspection, ffmpeg-python, future
# In order: start-up on a fresh Inductor cache (10 s clip, default settings), the end-to-end
# bench with its profile and ablation (40 s clip), the anchor bench, start-up again warm; and,
# named in STEPS, flow.align's cost in a render (align-true align-false) and coherence on the GPU
# (coherence-hh1080 coherence-static360 coherence-fast360; clips made here, carried in .gpu/);
# issue 31's flow-processes flow-threads gil live720 cpu-share (about 4 minutes together: run them
# as a second call, `STEPS="flow-processes flow-threads gil live720 cpu-share"`). `bash
# scripts/gpu_pack.sh` makes .gpu/ here. Results go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT" /tmp/bin /tmp/site /tmp/torch/hub/checkpoints
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl
xz -dc .gpu/av.tar.xz | tar -xf - -C /tmp/site
export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/bin:$PATH TORCH_HOME=/tmp/torch DREAM_OFFLINE=1
export PYTHONUNBUFFERED=1
xz -dc .gpu/ffmpeg.xz > /tmp/bin/ffmpeg && chmod +x /tmp/bin/ffmpeg
cp .gpu/mobilenet_v2-b0353104.pth /tmp/torch/hub/checkpoints/
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import sys, torch, cv2, av; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cv2', cv2.__version__, 'av', av.__version__)"
  nproc; ffmpeg -version | head -1; } 2>&1 | tee "$OUT/gpu.txt"
SIZE=${SIZE:-1920x1080}
STEPS=" ${STEPS:-startup-fresh bench anchor startup-warm} "  # which of the steps below to run
if [[ $STEPS =~ " "(startup|bench|anchor|ladder) ]]; then  # the sample clips those steps render
  t=$SECONDS
  python3 scripts/make_sample_clip.py --out /tmp/clip40.mp4 --seconds ${SECONDS_CLIP:-40} --size $SIZE
  ffmpeg -v error -y -i /tmp/clip40.mp4 -t 10 -c copy /tmp/clip10.mp4
  echo "clips made in $((SECONDS - t)) s" | tee -a "$OUT/gpu.txt"
fi
step() {  # name, limit in seconds, log name, command...
  local label=$1 limit=$2 log=$3; shift 3
  [[ $STEPS == *" $label "* ]] || return 0
  t=$SECONDS
  echo "== $label" | tee -a "$OUT/$log"
  timeout "$limit" "$@" 2>&1 | grep --line-buffered -v '^W[0-9]\{4\} ' | tee -a "$OUT/$log"
  echo "== $label: exit ${PIPESTATUS[0]} after $((SECONDS - t)) s" | tee -a "$OUT/gpu.txt" "$OUT/$log"
}
# 1. start-up on a fresh machine: nothing compiled yet (default settings, a 10 s clip)
step startup-fresh ${STARTUP_LIMIT:-120} startup_log.txt python3 scripts/startup_bench.py \
  /tmp/clip10.mp4 --cache-dir /tmp/fresh-cache --label "fresh machine" --out "$OUT/startup.md"
# 2. run C: end to end, 40 s clip, a 24-frame warm-up (10 segments), profile and ablation
step bench ${BENCH_LIMIT:-300} bench_log.txt python3 scripts/bench.py /tmp/clip40.mp4 -p video \
  --set video.warmup=24 --naive-frames 48 ${BENCH_ARGS:---ablation --profile} \
  --out "$OUT/bench_1080p.md"
# 3. against the frame-by-frame method, same work (10 segments again: compiled already)
step anchor ${ANCHOR_LIMIT:-150} anchor_log.txt python3 scripts/anchor_bench.py /tmp/clip40.mp4 \
  --frames 480 --anchor-frames 24 --batch 10 --set video.warmup=12 --out "$OUT/anchor.md"
# 4. start-up again on the same machine, the cache of step 1 in place
step startup-warm ${STARTUP_LIMIT:-120} startup_log.txt python3 scripts/startup_bench.py \
  /tmp/clip10.mp4 --cache-dir /tmp/fresh-cache --label "warm machine" --out "$OUT/startup.md"
# 5. flow.align's cost in a GPU render: a 10 s 1080p hand-held clip made by
#    `make_handheld_clip.py --out .gpu/hh1080.mp4 --seconds 10 --size 1920x1080`, align on, then off
for align in true false; do
  step align-$align ${ALIGN_LIMIT:-150} align_log.txt python3 scripts/bench.py .gpu/hh1080.mp4 \
    -p video --set video.warmup=24 --set flow.align=$align --naive-frames 8 --flow \
    --out "$OUT/align_$align.md"
done
# 6. coherence on the GPU (bf16) at 640x360, against the clips' exact motion: the hand-held clip,
#    a tripod shot (`--shake 0`, static360) and fast motion (`--shake 2.5 --photo chelsea --fps 24`).
#    One frame at a time (--batch 1) is slow: 300 frames of two modes took over 90 s each on an H200
for clip in hh1080 static360 fast360; do
  step coherence-$clip ${COHERENCE_LIMIT:-150} coherence_log.txt python3 \
    scripts/coherence_bench.py .gpu/$clip.mp4 -p video --batch 1 --size 640x360 \
    --frames ${COHERENCE_FRAMES:-120} \
    --metric-flow truth --modes independent,consistent --delivered --per-second
done
# 7. issue 31: DIS flow in worker processes (the GPU default) against flow threads, same clip
#    and settings; then the GIL bench beside 3 and 10 flow workers (as 3- and 10-segment renders
#    have) and beside 1080p decoding and encoding, and `dream live` at 720p (a 30 fps camera from a 720p clip made here)
for kind in processes threads; do
  step flow-$kind ${FLOWKIND_LIMIT:-120} flowkind_log.txt python3 scripts/bench.py \
    .gpu/hh1080.mp4 -p video --set video.warmup=24 --set video.flow_workers=$kind \
    --naive-frames 8 --flow --out "$OUT/flow_$kind.md"
done
for workers in 3 10; do
  step gil ${GIL_LIMIT:-60} gil_log.txt python3 scripts/gil_bench.py --stages flow \
    --workers $workers --rate 0 --seconds 3 --repeat 3 --out "$OUT/gil.md"
done
step gil ${GIL_LIMIT:-60} gil_log.txt python3 scripts/gil_bench.py --stages decode,encode \
  --rate 24 --seconds 3 --repeat 2 --out "$OUT/gil.md"
if [[ $STEPS == *" live720 "* ]]; then
  python3 scripts/make_sample_clip.py --out /tmp/live720.mp4 --seconds 30 --size 1280x720 --fps 30
fi
step live720 ${LIVE_LIMIT:-90} live_log.txt python3 scripts/live_bench.py /tmp/live720.mp4 \
  --sizes 1280x720 --seconds 20 --device cuda --out "$OUT/live720.md"
# 8. issue 31: end to end against the dream calls alone, on the GPU
step cpu-share ${SHARE_LIMIT:-150} share_log.txt python3 scripts/cpu_share_bench.py \
  --clip .gpu/hh1080.mp4 --end 4 --size 1920x1080 --repeat 1 --device cuda \
  --out "$OUT/share.md"
# 9. issue 42: the speed ladder at 1080p, each rung end to end and its look, today's default
#    (every octave on every carried frame) first: `STEPS=ladder` (about 5 minutes)
step ladder ${LADDER_LIMIT:-420} ladder_log.txt python3 scripts/ladder_bench.py /tmp/clip10.mp4 \
  --size $SIZE --seconds 10 --out "$OUT/ladder.md"
# what the start-up's imports cost, slowest first
step imports 60 imports.txt sh -c 'python3 -X importtime -c "import renderer.render.video" 2>&1 \
  | sort -t"|" -k2 -n -r | head -25'
cat "$OUT/gpu.txt"
