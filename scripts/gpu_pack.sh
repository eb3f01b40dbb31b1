#!/usr/bin/env bash
# Packs .gpu/ for scripts/gpu_check.sh from this machine's .venv (made by scripts/setup.sh): what
# a lent GPU machine lacks (it has torch, torchvision, OpenCV and numpy, but no ffmpeg binary, no
# registry and none of our small wheels), packed under the 64 MiB a device call may carry, and the
# clips of the align and coherence steps (`make_handheld_clip.py`; CLIPS=0 skips them). Run it here
# before the first device call. The one binary wheel (pydantic-core) is this Python's: the GPU
# machine's python3 must be the same minor version (gpu_check.sh prints it first).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p .gpu/whl
site=$($PY -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
# a static ffmpeg binary: imageio-ffmpeg 0.6.0's (ffmpeg 7.0.2, 20 MB packed; the 0.8 series'
# ffmpeg 9 packs to 50 MB, which with PyAV would not fit)
wheel=$(mktemp -d)
$PY -m pip download -q --no-deps --only-binary=:all: --platform manylinux2014_x86_64 -d "$wheel" \
  imageio-ffmpeg==0.6.0
$PY -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); sys.stdout.buffer.write(z.read(next(
n for n in z.namelist() if "/binaries/ffmpeg-linux" in n)))' "$wheel"/imageio_ffmpeg-0.6.0-*.whl \
  | xz -6 -T0 > .gpu/ffmpeg.xz
rm -rf "$wheel"
# PyAV: the installed package, its bundled libraries and its metadata
tar -C "$site" -cf - av av.libs "$(cd "$site" && ls -d av-*.dist-info)" | xz -6 -T0 > .gpu/av.tar.xz
# the offline MobileNetV2 weights rounded to fp16 (same network and FLOPs, half the bytes; the
# loader casts them back into the fp32 model)
$PY - <<'EOF'
import torch
from renderer.engine.models import MODELS
path = MODELS["mobilenet_v2"].weights_file()
state = torch.load(path, map_location="cpu", weights_only=True)
torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()},
           ".gpu/mobilenet_v2-b0353104.pth")
EOF
# the pure-Python wheels the renderer imports that a plain torch machine lacks, as installed here
rm -f .gpu/whl/*.whl
$PY -m pip download -q --no-deps -d .gpu/whl $($PY - <<'EOF'
from importlib.metadata import version
for name in ("pydantic", "pydantic-core", "annotated-types", "typing-inspection", "ffmpeg-python",
             "future"):
    print(f"{name}=={version(name)}")
EOF
)
if [[ ${CLIPS:-1} == 1 ]]; then  # the align and coherence steps' clips, made here
  $PY scripts/make_handheld_clip.py --out .gpu/hh1080.mp4 --seconds 10 --size 1920x1080
  $PY scripts/make_handheld_clip.py --out .gpu/static360.mp4 --seconds 10 --size 640x360 --shake 0
  $PY scripts/make_handheld_clip.py --out .gpu/fast360.mp4 --seconds 10 --size 640x360 \
    --shake 2.5 --photo chelsea --fps 24
fi
bytes=$(du -cb .gpu/* .gpu/whl/* | tail -1 | cut -f1)
echo ".gpu: $bytes bytes"
(( bytes < 64 * 1024 * 1024 )) || { echo "over the 64 MiB a device call carries" >&2; exit 1; }
