"""The start-up check names the system libraries Qt's xcb plugin misses, instead of Qt's abort."""

from __future__ import annotations

import os
import stat
import sys

import pytest
from lrpseg.app import main as gui_main
from lrpseg.app.platform_check import install_hint, missing_libraries, uses_xcb, xcb_problem

LDD_OUTPUT = """\
\tlinux-vdso.so.1 (0x00007ffd)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007f)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-icccm.so.4 => not found
"""


def test_missing_libraries_are_read_from_ldd_and_mapped_to_packages():
    missing = missing_libraries(LDD_OUTPUT)
    assert missing == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert install_hint(missing) == "sudo apt-get install libxcb-icccm4 libxcb-keysyms1"
    assert install_hint(["libunknown.so.7"]) == "sudo apt-get install libunknown.so.7"


def test_only_the_xcb_platform_is_checked():
    assert uses_xcb({"DISPLAY": ":0"})
    assert uses_xcb({"QT_QPA_PLATFORM": "xcb"})
    assert not uses_xcb({"QT_QPA_PLATFORM": "offscreen"})
    assert not uses_xcb({"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0"})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb plugin exists on Linux only")
def test_problem_names_the_missing_libraries_and_their_packages(tmp_path, monkeypatch):
    fake = tmp_path / "ldd"
    fake.write_text("#!/bin/sh\ncat <<'END'\n" + LDD_OUTPUT + "END\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    message = xcb_problem({"DISPLAY": ":0"})
    assert "libxcb-icccm.so.4, libxcb-keysyms.so.1" in message
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1" in message
    assert xcb_problem({"QT_QPA_PLATFORM": "offscreen"}) is None
    fake.write_text("#!/bin/sh\necho '\tlibc.so.6 => /lib/libc.so.6 (0x1)'\n")
    assert xcb_problem({"DISPLAY": ":0"}) is None


def test_the_app_prints_the_problem_and_exits_instead_of_aborting(monkeypatch, capsys):
    monkeypatch.setattr("lrpseg.app.platform_check.xcb_problem", lambda: "needs libxcb-icccm.so.4")
    assert gui_main.main(["--device", "cpu"]) == 3
    assert "needs libxcb-icccm.so.4" in capsys.readouterr().err
