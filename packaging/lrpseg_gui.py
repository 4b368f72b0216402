"""PyInstaller entry script: the bundled ``lrpseg-gui`` executable."""

import sys

from lrpseg.app.main import main

if __name__ == "__main__":
    sys.exit(main())
