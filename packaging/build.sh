#!/usr/bin/env bash
# Build the one-folder desktop bundle dist/lrpseg/ with PyInstaller, from the project's .venv.
# Usage: packaging/build.sh            (creates .venv with the project if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
  .venv/bin/pip install -e .
fi
.venv/bin/pip install -q 'pyinstaller>=6.10'
.venv/bin/pyinstaller --noconfirm --clean --distpath dist --workpath build/pyinstaller packaging/lrpseg.spec
cp packaging/lrpseg.desktop resources/icons/lrpseg.png dist/lrpseg/
echo "bundle: dist/lrpseg ($(du -sh dist/lrpseg | cut -f1)); start it with dist/lrpseg/lrpseg-gui [FOLDER]"
