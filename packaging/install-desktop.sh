#!/usr/bin/env bash
# Add medstation to the desktop's menu for this user (freedesktop: GNOME, KDE, XFCE ...).
#   bash packaging/install-desktop.sh [PATH/TO/medstation]   (default: dist/medstation/medstation)
# It appears in the menu with its icon, and "Open with medstation" is offered for DICOM files and
# folders (it does not become the default for folders). Opening another study while it runs
# goes to the running window. Undo: bash packaging/install-desktop.sh --remove
set -euo pipefail
cd "$(dirname "$0")/.."
APPS=${XDG_DATA_HOME:-$HOME/.local/share}/applications
ICONS=${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor
if [ "${1:-}" = "--remove" ]; then
    rm -f "$APPS/medstation.desktop"
    find "$ICONS" -name medstation.png -path "*/apps/*" -delete 2>/dev/null || true
    command -v update-desktop-database >/dev/null && update-desktop-database "$APPS" || true
    exit 0
fi
EXE=$(readlink -f "${1:-dist/medstation/medstation}")
[ -x "$EXE" ] || { echo "no executable at $EXE: build the bundle first (bash packaging/build.sh)" >&2; exit 1; }
mkdir -p "$APPS"
sed -e "s|^Exec=medstation |Exec=\"$EXE\" |" -e "s|^TryExec=medstation|TryExec=$EXE|" \
    resources/medstation.desktop > "$APPS/medstation.desktop"
for dir in resources/icons/hicolor/*/apps; do
    size=$(basename "$(dirname "$dir")")
    mkdir -p "$ICONS/$size/apps"
    cp "$dir/medstation.png" "$ICONS/$size/apps/medstation.png"
done
command -v update-desktop-database >/dev/null && update-desktop-database "$APPS" || true
command -v gtk-update-icon-cache >/dev/null && gtk-update-icon-cache -q "$ICONS" 2>/dev/null || true
command -v desktop-file-validate >/dev/null && desktop-file-validate "$APPS/medstation.desktop" || true
echo "installed $APPS/medstation.desktop -> $EXE"
