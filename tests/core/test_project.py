"""core.project: durable labels, undo/redo, settings, overrides, cache, locking and schema versions."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from lrpseg.core.labels import DAMAGED, UNDAMAGED
from lrpseg.core.project import (
    SCHEMA_VERSION,
    Project,
    ProjectError,
    ProjectLockedError,
    ProjectVersionError,
)

ROOT = Path(__file__).resolve().parents[2]


def _png(path: Path, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cv2.imencode(".png", np.full((4, 4), value, np.uint8))[1].tobytes())


@pytest.fixture
def folder(tmp_path):
    for rel in ["a.png", "b.png", "sub/c.png", "sub/d.png"]:
        _png(tmp_path / rel)
    return tmp_path


def test_images_synced_with_folder(folder):
    with Project.open(folder) as project:
        assert project.images() == ["a.png", "b.png", "sub/c.png", "sub/d.png"]
        assert (folder / ".lrpseg" / "project.sqlite").is_file()
        _png(folder / "new.png")
        (folder / "b.png").unlink()
        assert project.rescan() == ["a.png", "new.png", "sub/c.png", "sub/d.png"]
        assert project.images() == project.rescan()


def test_labels_survive_reopen_and_missing_files_are_kept(folder):
    with Project.open(folder) as project:
        assert project.set_label("a.png", DAMAGED) is True
        assert project.set_label("a.png", "damaged") is False  # no change, no history entry
        project.set_label("sub/c.png", "ok")  # synonym
        assert project.label("b.png") is None
    (folder / "a.png").unlink()
    with Project.open(folder) as project:
        assert project.labels() == {"sub/c.png": UNDAMAGED}
        assert project.labels(include_missing=True) == {"a.png": DAMAGED, "sub/c.png": UNDAMAGED}
        assert project.label("a.png") == DAMAGED
        assert len(project.history()) == 2
    for bad in ["/abs.png", "../up.png", "a\\b.png", "./a.png", "", "a//b.png"]:
        with Project.open(folder) as project, pytest.raises(ValueError):
            project.set_label(bad, DAMAGED)
    with Project.open(folder) as project, pytest.raises(ValueError, match="unknown label"):
        project.set_label("b.png", "cracked")


def test_undo_redo(folder):
    with Project.open(folder) as project:
        assert project.undo() is None and project.redo() is None
        project.set_label("a.png", DAMAGED)
        project.set_label("a.png", UNDAMAGED)
        project.set_label("b.png", DAMAGED)
        assert project.undo() == "b.png" and project.label("b.png") is None
        assert project.undo() == "a.png" and project.label("a.png") == DAMAGED
        assert project.redo() == "a.png" and project.label("a.png") == UNDAMAGED
        assert project.undo() == "a.png" and project.label("a.png") == DAMAGED
    with Project.open(folder) as project:  # history persists
        assert project.redo() == "a.png" and project.label("a.png") == UNDAMAGED
        assert project.redo() == "b.png" and project.label("b.png") == DAMAGED
        assert project.redo() is None
        project.undo()
        project.undo()  # a.png back to damaged; redo tail: a->undamaged, b->damaged
        project.set_label("sub/c.png", DAMAGED)  # a new label drops the redo tail
        assert project.redo() is None
        assert project.labels() == {"a.png": DAMAGED, "sub/c.png": DAMAGED}
        # A bulk import is one step.
        project.set_labels({"a.png": None, "b.png": "1", "sub/d.png": "0"})
        assert project.labels() == {"b.png": DAMAGED, "sub/c.png": DAMAGED, "sub/d.png": UNDAMAGED}
        assert project.undo() == "a.png"
        assert project.labels() == {"a.png": DAMAGED, "sub/c.png": DAMAGED}
        assert project.undo() == "sub/c.png" and project.labels() == {"a.png": DAMAGED}
        events = project.history()
        assert events[0].rel == "sub/d.png" and events[0].undone and events[-1].step == 1


_CHILD = textwrap.dedent(
    """
    import sys
    from lrpseg.core.project import Project
    project = Project.open(sys.argv[1])
    for i in range(100000):
        rel, label = f"img{i:05d}.png", ("damaged", "undamaged")[i % 2]
        project.set_label(rel, label)
        print(rel, label, flush=True)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_labels_committed_before_return_survive_sigkill(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env
    )
    printed = []
    try:
        while len(printed) < 60:
            line = child.stdout.readline()
            assert line, "child exited early"
            printed.append(line.split())
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    with Project.open(tmp_path) as project:
        stored = project.labels(include_missing=True)
        for rel, label in printed:
            assert stored[rel] == label
        assert len(stored) >= len(printed)
    conn = sqlite3.connect(tmp_path / ".lrpseg" / "project.sqlite")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_settings_model_path_and_threshold_overrides(folder):
    with Project.open(folder) as project:
        assert project.get_setting("rule_set", "ours") == "ours"
        project.set_setting("segmenter", {"name": "bmm", "params": [1, 2.5]})
        project.model_path = folder / "models" / "m.safetensors"
        project.set_threshold_override("a.png", "ours/bmm", 0.3)
        project.set_threshold_override("b.png", "ours/bmm", 0.7)
        project.set_threshold_override("a.png", "montavon/gmm", 0.9)
        with pytest.raises(ValueError):
            project.set_threshold_override("a.png", "ours/bmm", float("nan"))
    with Project.open(folder) as project:
        assert project.get_setting("segmenter") == {"name": "bmm", "params": [1, 2.5]}
        assert project.get_setting("model_path") == "models/m.safetensors"  # relative: the folder may move
        assert project.model_path == folder / "models" / "m.safetensors"
        assert project.threshold_override("a.png", "ours/bmm") == 0.3
        assert project.threshold_overrides("ours/bmm") == {"a.png": 0.3, "b.png": 0.7}
        project.set_threshold_override("a.png", "ours/bmm", None)
        assert project.threshold_override("a.png", "ours/bmm") is None
        project.set_setting("segmenter", None)
        assert project.get_setting("segmenter") is None
        project.model_path = "/elsewhere/m.safetensors"
        assert project.model_path == Path("/elsewhere/m.safetensors")


def test_prediction_and_relevance_cache(folder):
    relevance = np.random.default_rng(0).normal(size=(224, 224)).astype(np.float32)
    with Project.open(folder) as project:
        project.store_prediction("a.png", "m1", 0.875)
        project.store_prediction("b.png", "m1", 0.25)
        project.store_prediction("b.png", "m2", 0.5)
        project.store_relevance("a.png", "m1", "ours", relevance)
        assert project.load_relevance("a.png", "m1", "montavon") is None
    with Project.open(folder) as project:
        assert project.predictions("m1") == {"a.png": 0.875, "b.png": 0.25}
        back = project.load_relevance("a.png", "m1", "ours")
        assert back.dtype == np.float32
        np.testing.assert_array_equal(back, relevance)
        assert len(list((folder / ".lrpseg" / "cache").glob("*.npy"))) == 1
        # A changed image invalidates its cache entries.
        _png(folder / "a.png", value=200)
        os.utime(folder / "a.png", ns=(1, 1))
        assert project.load_relevance("a.png", "m1", "ours") is None
        assert project.predictions("m1") == {"b.png": 0.25}
        project.clear_cache("m1")
        assert project.predictions("m1") == {} and project.predictions("m2") == {"b.png": 0.5}
        assert list((folder / ".lrpseg" / "cache").glob("*.npy")) == []


def test_relevance_cache_stays_under_its_cap_dropping_the_oldest_maps(folder):
    one_map = np.zeros((64, 64), np.float32)  # 16 KiB + the .npy header
    with Project.open(folder) as probe:
        probe.store_relevance("a.png", "m", "probe", one_map)
        size = probe.cache_bytes()
        probe.clear_cache()
    cap = 10 * size
    with Project.open(folder, cache_limit_bytes=cap) as project:
        for i in range(25):
            project.store_relevance("a.png", "m", f"r{i}", np.full((64, 64), i, np.float32))
            assert project.cache_bytes() <= cap
        kept = [i for i in range(25) if project.load_relevance("a.png", "m", f"r{i}") is not None]
        assert kept == list(range(25 - len(kept), 25)) and 5 <= len(kept) <= 10  # the newest maps survive
        assert project.load_relevance("a.png", "m", "r24")[0, 0] == 24
        files = {p.name for p in project.cache_dir.glob("*.npy")}
        assert len(files) == len(kept)  # evicted maps leave no file and no index row behind
    with Project.open(folder, cache_limit_bytes=cap) as reopened:  # a new session counts what is on disk
        reopened.store_relevance("b.png", "m", "r0", one_map)
        assert reopened.cache_bytes() <= cap
        assert reopened.load_relevance("b.png", "m", "r0") is not None


def test_worker_thread_stores_while_gui_thread_labels(folder):
    with Project.open(folder) as project:
        errors = []

        def worker():
            try:
                for i in range(20):
                    project.store_relevance("sub/c.png", "m", f"r{i}", np.full((8, 8), i, np.float32))
                    project.store_prediction("sub/c.png", f"m{i}", i / 20)
            except Exception as error:  # pragma: no cover - reported below
                errors.append(error)

        thread = threading.Thread(target=worker)
        thread.start()
        for i in range(20):
            project.set_label("a.png", (DAMAGED, UNDAMAGED)[i % 2])
        thread.join()
        assert errors == []
        assert project.load_relevance("sub/c.png", "m", "r19")[0, 0] == 19
        assert project.label("a.png") == UNDAMAGED


def test_locked_database_gives_clear_error(folder):
    Project.open(folder).close()
    blocker = sqlite3.connect(folder / ".lrpseg" / "project.sqlite", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another program in the middle of a write
    try:
        with Project.open(folder, busy_timeout_s=0.5) as project:
            assert project.label("a.png") is None  # readers are not blocked in WAL mode
            start = time.monotonic()
            with pytest.raises(ProjectLockedError, match="locked by another program"):
                project.set_label("a.png", DAMAGED)
            assert time.monotonic() - start >= 0.4
            blocker.execute("COMMIT")
            project.set_label("a.png", DAMAGED)
            assert project.label("a.png") == DAMAGED
    finally:
        blocker.close()


def test_newer_schema_refused_and_bad_files(folder, tmp_path_factory):
    Project.open(folder).close()
    conn = sqlite3.connect(folder / ".lrpseg" / "project.sqlite")
    conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    with pytest.raises(ProjectVersionError, match="newer lrpseg"):
        Project.open(folder)
    with pytest.raises(ProjectError, match="not a folder"):
        Project.open(folder / "a.png")
    other = tmp_path_factory.mktemp("garbage")
    (other / ".lrpseg").mkdir()
    (other / ".lrpseg" / "project.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ProjectError, match="not a readable lrpseg project database"):
        Project.open(other)
    project = Project.open(tmp_path_factory.mktemp("fresh"))
    project.close()
    with pytest.raises(ProjectError, match="closed"):
        project.labels()


def test_label_steps_share_one_transaction_but_undo_one_by_one(folder):
    with Project.open(folder) as project:
        changed = project.set_label_steps([{"a.png": DAMAGED}, {"a.png": "defect"}, {"b.png": UNDAMAGED},
                                           {"a.png": UNDAMAGED}])
        assert changed == [True, False, True, True]  # "defect" is damaged again: no change, no step
        assert project.labels() == {"a.png": UNDAMAGED, "b.png": UNDAMAGED}
        assert project.undo() == "a.png" and project.label("a.png") == DAMAGED
        assert project.undo() == "b.png" and project.undo() == "a.png" and project.labels() == {}
        with pytest.raises(ValueError):  # one bad step refuses the whole transaction
            project.set_label_steps([{"a.png": DAMAGED}, {"b.png": "maybe"}])
        assert project.labels() == {}
