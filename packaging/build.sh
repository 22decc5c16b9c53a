#!/usr/bin/env bash
# Build the one-folder app (dist/medstation) and its archive, then run its self-test.
#   bash packaging/build.sh            # trim level "slim" (see packaging/bundle.py and slim.py)
#   MEDSTATION_TRIM=safe bash packaging/build.sh    # every CUDA library as torch ships it
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash packaging/dev-setup.sh
.venv/bin/python -m pip install -q -e '.[package]' 2> >(grep -v "is neither a file nor a directory" >&2)
export MEDSTATION_TRIM=${MEDSTATION_TRIM:-slim}
t0=$(date +%s)
.venv/bin/pyinstaller --noconfirm --clean --log-level WARN --distpath dist --workpath build/pyinstaller \
    packaging/medstation.spec
.venv/bin/python packaging/slim.py dist/medstation "$MEDSTATION_TRIM"
t1=$(date +%s)
ARCHIVE=dist/medstation-$(.venv/bin/python -c 'import medstation; print(medstation.__version__)')-linux-x86_64.tar
if command -v zstd >/dev/null; then
    tar -C dist -cf - medstation | zstd -q -T0 -6 -o "$ARCHIVE.zst" -f; ARCHIVE=$ARCHIVE.zst
else
    tar -C dist -czf "$ARCHIVE.gz" medstation; ARCHIVE=$ARCHIVE.gz
fi
t2=$(date +%s)
echo "bundle: $(du -sh dist/medstation | cut -f1) folder, $(du -sh "$ARCHIVE" | cut -f1) archive ($ARCHIVE)"
echo "build: $((t1 - t0)) s PyInstaller, $((t2 - t1)) s archive (trim: $MEDSTATION_TRIM)"
QT_QPA_PLATFORM=offscreen dist/medstation/medstation selftest
