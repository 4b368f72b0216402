#!/usr/bin/env bash
# Smoke test of the desktop bundle (not part of the unit tests): build it, start it offscreen with --version and
# on a demo folder, check that it shows its window and exits cleanly, and report bundle size and start times.
# Usage: packaging/smoke.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" != "--no-build" ]]; then
  packaging/build.sh
fi
bundle=dist/lrpseg/lrpseg-gui
[[ -x $bundle ]] || { echo "no bundle at $bundle (run packaging/build.sh)" >&2; exit 1; }
export QT_QPA_PLATFORM=offscreen
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

start=$(date +%s.%N)
version=$("$bundle" --version)
version_s=$(python3 -c "import sys; print(round(float(sys.argv[1]) - float(sys.argv[2]), 2))" "$(date +%s.%N)" "$start")
echo "version: $version (${version_s} s)"
grep -q "lrpseg" <<<"$version"

.venv/bin/lrpseg demo "$work/demo" --damaged 4 --undamaged 4 --size 128 >/dev/null
start=$(date +%s.%N)
"$bundle" "$work/demo/images" --smoke-test 3 >"$work/log" 2>&1 || { cat "$work/log"; exit 1; }
open_s=$(python3 -c "import sys; print(round(float(sys.argv[1]) - float(sys.argv[2]), 2))" "$(date +%s.%N)" "$start")
grep -q "window shown (8 images)" "$work/log" || { cat "$work/log"; echo "window did not show" >&2; exit 1; }
echo "bundle: $(du -sh dist/lrpseg | cut -f1); --version in ${version_s} s; opened the demo folder and quit in ${open_s} s (3 s of it waiting)"
