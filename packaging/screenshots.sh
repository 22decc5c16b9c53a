#!/usr/bin/env bash
# Regenerate resources/screenshots/*.png from the real app on Xvfb (needs the dev setup).
set -euo pipefail
cd "$(dirname "$0")/.."
unset QT_QPA_PLATFORM
exec xvfb-run -a -s "-screen 0 2000x1200x24" .venv/bin/python packaging/screenshots.py
