#!/usr/bin/env bash
# The wheels a lent GPU machine lacks (its image has torch, scipy, scikit-image, tifffile, safetensors,
# pytest; no package index is reachable from it), for its Python 3.12, into .whl/ (ignored by git via
# .git/info/exclude). Run here, before bench/gpu_check.sh travels with `carry: [".whl"]`.
#   bash bench/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .git/info .whl
grep -qs '^/.whl/$' .git/info/exclude || echo /.whl/ >> .git/info/exclude
PKGS=(monai==1.6.1 nibabel==5.4.2 pydicom==3.0.2 highdicom==0.28.2 pyjpegls pynetdicom==3.0.4
      mrcfile==1.5.4 astropy==8.0.2 astropy-iers-data pyerfa==2.0.1.5)
PLATFORMS=()
for n in 2_28 2_27 2_17 2014 1; do
    [[ $n == 2014 || $n == 1 ]] && PLATFORMS+=(--platform "manylinux${n}_x86_64") \
        || PLATFORMS+=(--platform "manylinux_${n}_x86_64")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]}" -d .whl "${PKGS[@]}"
ls -la .whl
du -sh .whl
