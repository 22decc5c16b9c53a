#!/usr/bin/env bash
# Set up a development environment in .venv: system libraries, then the project
# with its AI (pinned torch) and test extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# System libraries (Debian): what Qt needs to draw (offscreen in the tests, xcb on
# a desktop) and Xvfb for the screenshot script. Installed only when missing.
APT_PACKAGES=(libegl1 libgl1 libfontconfig1 libxkbcommon0 libxkbcommon-x11-0 libdbus-1-3
              libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0
              libxcb-randr0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 xvfb xauth
              # a real PACS for the tests (started by a fixture) and the DICOM validator
              orthanc orthanc-dicomweb dicom3tools
              # the bundle's library stubs (packaging/slim.py) and their tests
              gcc binutils)
MISSING=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || MISSING+=("$p")
done
APT_PACKAGES=("${MISSING[@]+"${MISSING[@]}"}")
if [ ${#APT_PACKAGES[@]} -gt 0 ] && command -v apt-get >/dev/null; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${APT_PACKAGES[@]}"
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>/dev/null || true
# torch is pinned (2.14.1 / torchvision 0.29.x): an unpinned torch pulls several GB
.venv/bin/python -m pip install -q -e '.[ai,test,onnx,bench]' 2> >(grep -v "is neither a file nor a directory" >&2)
