"""Two lrpseg instances on one project: their writes interleave without corruption, and a writer that finds
the project locked by the other gets a clear message instead of a hang or a traceback."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lrpseg.core import project as project_module
from lrpseg.core.cli import main as lrpseg_main
from lrpseg.core.labels import DAMAGED, UNDAMAGED
from lrpseg.core.project import Project, ProjectLockedError
from reliability_helpers import LABELLER, PYTHON, ROOT, child_env

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

_INSTANCE = """
import random, sys, time
import numpy as np
from lrpseg.core.project import Project
folder, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(name)
project = Project.open(folder)
rels = [f"{name}/img{i:02d}.png" for i in range(15)] + ["shared.png"]
print("ready", flush=True)
sys.stdin.readline()  # start together
for index in range(count):
    rel, label = rng.choice(rels), rng.choice(["damaged", "undamaged"])
    if index % 10 == 9:
        project.store_relevance(rel, name, "ours", np.full((32, 32), index, np.float32))
        print("relevance", rel, index, flush=True)
    else:
        project.set_label(rel, label)
        print("label", rel, label, flush=True)
    time.sleep(0.002)  # a pause between user actions, so the other instance can take the lock in between
project.close()
"""


def _spawn(code: str, *args: str) -> subprocess.Popen:
    """A child Python running ``code`` on the repository, with pipes for all three streams."""
    return subprocess.Popen(
        [PYTHON, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
        cwd=ROOT,
    )


def _integrity(folder: Path) -> str:
    conn = sqlite3.connect(folder / ".lrpseg" / "project.sqlite")
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def test_two_instances_write_at_once_without_corruption(tmp_path):
    """Two processes open one project at the same moment and write 300 times each.

    The project exists beforehand (creating one at the same moment is the test below); each instance pauses 2 ms
    between actions, as a user would, so the two really interleave."""
    Project.open(tmp_path).close()
    children = {name: _spawn(_INSTANCE, str(tmp_path), name, "300") for name in ("first", "second")}
    for child in children.values():
        assert child.stdout.readline().strip() == "ready"
    outputs = {}
    for child in children.values():
        child.stdin.write("go\n")
        child.stdin.flush()
    for name, child in children.items():
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err[-2000:]
        outputs[name] = [line.split() for line in out.splitlines()]
    assert _integrity(tmp_path) == "ok"
    with Project.open(tmp_path) as project:
        stored = project.labels(include_missing=True)
        shared = set()
        for name, lines in outputs.items():
            labelled = [(rel, label) for kind, rel, label in lines if kind == "label"]
            last = dict(labelled)
            if "shared.png" in last:
                shared.add(last.pop("shared.png"))
            assert {rel: stored[rel] for rel in last} == last  # each instance's own labels, all there
            maps = {rel: int(index) for kind, rel, index in lines if kind == "relevance"}
            for rel, index in maps.items():  # the latest map each instance cached is there and complete
                assert project.load_relevance(rel, name, "ours")[0, 0] == index
        assert stored.get("shared.png") in shared  # the image both label: one of the two last writes
        events = project.history(limit=10_000)[::-1]
        assert len(events) <= sum(len(lines) for lines in outputs.values())
        writers = [event.rel.split("/")[0] for event in events if event.rel != "shared.png"]
        switches = sum(a != b for a, b in zip(writers, writers[1:], strict=False))
        assert switches >= 10, "the two instances did not write at the same time"


def _holds_write_lock(db: Path) -> bool:
    probe = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        probe.close()


def test_second_writer_gets_a_clear_message_while_the_first_is_frozen_mid_write(tmp_path):
    """The first instance is stopped (SIGSTOP) in the middle of a commit; the second one can still read,
    and its write fails after the busy timeout with a message that says what to do. Nothing is lost."""
    Project.open(tmp_path).close()
    db = tmp_path / ".lrpseg" / "project.sqlite"
    first = subprocess.Popen(
        [PYTHON, "-c", LABELLER, str(tmp_path), "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=child_env(),
        cwd=ROOT,
    )
    try:
        assert first.stdout.readline().startswith("committed")
        for _ in range(500):  # stop it until it is caught holding the write lock
            first.send_signal(signal.SIGSTOP)
            time.sleep(0.005)
            if _holds_write_lock(db):
                break
            first.send_signal(signal.SIGCONT)
            time.sleep(0.003)
        else:
            pytest.fail("never caught the first instance inside a write transaction")
        with Project.open(tmp_path, busy_timeout_s=0.5) as second:
            second.labels()  # reading is not blocked
            started = time.monotonic()
            with pytest.raises(ProjectLockedError) as info:
                second.set_label("mine.png", DAMAGED)
            waited = time.monotonic() - started
            message = str(info.value)
            assert str(tmp_path) in message and "locked by another program" in message
            assert "try again" in message.lower()
            assert 0.4 <= waited < 5
            first.send_signal(signal.SIGCONT)
            line = first.stdout.readline()  # the resumed first may need longer than the second's 0.5 s to commit
            assert line.startswith("committed")
            second.set_label("mine.png", UNDAMAGED)  # once the first has committed, the second writes
    finally:
        first.send_signal(signal.SIGCONT)
        first.kill()
        first.wait(timeout=30)
        first.stdout.close()
    assert _integrity(tmp_path) == "ok"
    with Project.open(tmp_path) as project:
        assert project.label("mine.png") == UNDAMAGED


def test_cli_second_writer_gets_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "a.png").write_bytes(b"")  # listed by suffix; the label import does not decode it
    Project.open(tmp_path).close()
    labels = tmp_path / "labels.csv"
    labels.write_text("image,label\na.png,damaged\n", encoding="utf-8")
    real_open = Project.open.__func__
    monkeypatch.setattr(
        project_module.Project, "open", classmethod(lambda cls, folder: real_open(cls, folder, busy_timeout_s=0.3))
    )
    blocker = sqlite3.connect(tmp_path / ".lrpseg" / "project.sqlite", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the other instance, mid-write
    try:
        code = lrpseg_main(["labels", "import", str(tmp_path), "--file", str(labels)])
    finally:
        blocker.close()
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("lrpseg labels: error: ") and "locked by another program" in err


_OPENER = """
import sys
from lrpseg.core.project import Project
project = Project.open(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
project.close()
"""


@pytest.mark.parametrize("attempt", range(4))
def test_two_instances_create_one_new_project_at_the_same_moment(tmp_path, attempt):
    """Both open a folder without a project at once; switching the new database to WAL must not fail."""
    children = [_spawn(_OPENER, str(tmp_path)) for _ in range(2)]
    results = [child.communicate("\n", timeout=60) for child in children]
    for child, (out, err) in zip(children, results, strict=True):
        assert child.returncode == 0 and out.strip() == "ready", err[-2000:]
    assert _integrity(tmp_path) == "ok"
