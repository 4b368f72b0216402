"""Before Qt starts on Linux/X11: name the system libraries its xcb platform plugin cannot find.

Qt aborts when the xcb plugin fails to load and blames ``libxcb-cursor0`` whatever is really missing. This
module asks the dynamic loader (``ldd``) which libraries of the plugin are not found and turns their names into
the Debian/Ubuntu packages to install, so the app can say exactly what to do instead of aborting.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# Shared libraries of PySide6's xcb plugin (ldd on libqxcb.so and libQt6XcbQpa.so.6 of PySide6 6.11) and the
# Debian/Ubuntu packages that hold them. README's troubleshooting installs the same list.
XCB_PACKAGES = {
    "libxcb.so.1": "libxcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
}
NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.MULTILINE)


def missing_libraries(ldd_output: str) -> list[str]:
    """The library names ``ldd`` reported as ``not found``, each once, in order."""
    return list(dict.fromkeys(NOT_FOUND.findall(ldd_output)))


def install_hint(libraries: list[str]) -> str:
    """The ``apt-get install`` line for ``libraries`` (names without a known package are listed as they are)."""
    packages = [XCB_PACKAGES.get(name, name) for name in libraries]
    return "sudo apt-get install " + " ".join(dict.fromkeys(packages))


def uses_xcb(environ: dict[str, str]) -> bool:
    """Whether Qt will pick the X11 (xcb) platform plugin under ``environ`` (Linux only)."""
    platform = environ.get("QT_QPA_PLATFORM", "")
    if platform:
        return platform == "xcb"
    return not (environ.get("XDG_SESSION_TYPE") == "wayland" and environ.get("WAYLAND_DISPLAY"))


def xcb_plugin_files() -> list[Path]:
    """PySide6's xcb plugin and the Qt library it loads."""
    import PySide6

    qt = Path(PySide6.__file__).parent / "Qt"
    return [p for p in (qt / "plugins" / "platforms" / "libqxcb.so", qt / "lib" / "libQt6XcbQpa.so.6")
            if p.exists()]


def xcb_problem(environ: dict[str, str] | None = None) -> str | None:
    """A message naming the missing system libraries when Qt's xcb plugin cannot load, else ``None``.

    ``None`` also when the check does not apply (not Linux, another platform plugin) or cannot run (no ``ldd``):
    Qt then reports problems itself.
    """
    environ = dict(os.environ if environ is None else environ)
    ldd = shutil.which("ldd")
    if not sys.platform.startswith("linux") or not uses_xcb(environ) or ldd is None:
        return None
    output = ""
    for path in xcb_plugin_files():
        try:
            output += subprocess.run([ldd, str(path)], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            return None
    missing = missing_libraries(output)
    if not missing:
        return None
    return (
        "lrpseg-gui cannot start the window: Qt's X11 (xcb) platform plugin needs system libraries that are "
        f"not installed: {', '.join(missing)}.\n"
        f"On Debian/Ubuntu install them with:\n    {install_hint(missing)}\n"
        "Everything except the window also works from the command line: lrpseg --help."
    )
