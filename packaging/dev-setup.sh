#!/usr/bin/env bash
# Set up a development environment in .venv: system libraries, then the project
# with its AI (pinned torch) and test extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# System libraries (Debian). None are needed yet by the loader and CLI; the
# viewer (Qt/xcb) and the PACS tests (Orthanc) add theirs here.
APT_PACKAGES=()
if [ ${#APT_PACKAGES[@]} -gt 0 ] && command -v apt-get >/dev/null; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${APT_PACKAGES[@]}"
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>/dev/null || true
# torch is pinned (2.14.1 / torchvision 0.29.x): an unpinned torch pulls several GB
.venv/bin/python -m pip install -q -e '.[ai,test]' 2> >(grep -v "is neither a file nor a directory" >&2)
