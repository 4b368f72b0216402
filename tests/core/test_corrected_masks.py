"""Corrected masks in the project: lossless, described by a row, never broken by a crash, reported when damaged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from lrpseg.core.corrected_masks import CorrectedMaskError, CorrectedMasks
from lrpseg.core.project import Project

ROOT = Path(__file__).resolve().parents[2]


def _mask(seed: int, shape=(48, 64)) -> np.ndarray:
    return np.random.default_rng(seed).random(shape) < 0.3


def test_save_load_round_trip_with_its_row(tmp_path):
    with Project.open(tmp_path) as project:
        store = CorrectedMasks(project)
        assert store.load("a.png") is None and store.infos() == {}
        mask = _mask(0)
        info = store.save("a.png", mask, author="ines", model_id="model-1", rule_set="ours", segmenter="bmm",
                          threshold=0.42)
        assert (info.author, info.model_id, info.rule_set, info.segmenter, info.threshold) == (
            "ines", "model-1", "ours", "bmm", 0.42)
        assert (info.height, info.width, info.pixels) == (48, 64, int(mask.sum()))
        np.testing.assert_array_equal(store.load("a.png", shape=(48, 64, 3)), mask)
        first_created = info.created_at
        time.sleep(0.01)
        second = store.save("a.png", ~mask)  # the default author is the login name
        assert second.created_at == first_created and second.saved_at > info.saved_at and second.author
        assert sorted(p.name for p in store.folder.iterdir()) == [second.file]  # the old file is gone
    with Project.open(tmp_path) as reopened:  # a restart
        store = CorrectedMasks(reopened)
        np.testing.assert_array_equal(store.load("a.png"), ~mask)
        assert store.rels() == {"a.png"}
        assert store.delete("a.png") and store.load("a.png") is None and not store.delete("a.png")
        assert list(store.folder.iterdir()) == []


def test_clearing_the_cache_or_a_new_model_leaves_corrections_alone(tmp_path):
    with Project.open(tmp_path) as project:
        store = CorrectedMasks(project)
        store.save("a.png", _mask(1), model_id="old")
        project.store_relevance("a.png", "new", "ours", np.zeros((4, 4), np.float32))
        project.clear_cache()
        project.model_path = tmp_path / "model-2.safetensors"
        np.testing.assert_array_equal(store.load("a.png"), _mask(1))


def test_damaged_missing_or_resized_files_are_reported_by_name(tmp_path):
    with Project.open(tmp_path) as project:
        store = CorrectedMasks(project)
        info = store.save("sub/a.png", _mask(2))
        path = store.folder / info.file
        with pytest.raises(CorrectedMaskError, match="image is now 10×10"):
            store.load("sub/a.png", shape=(10, 10))
        data = bytearray(path.read_bytes())
        data[-20] ^= 0xFF
        path.write_bytes(bytes(data))
        with pytest.raises(CorrectedMaskError, match=r"sub/a\.png.*damaged"):
            store.load("sub/a.png")
        path.unlink()
        with pytest.raises(CorrectedMaskError, match="cannot be read"):
            store.load("sub/a.png")


def test_bad_input_is_refused(tmp_path):
    with Project.open(tmp_path) as project:
        store = CorrectedMasks(project)
        with pytest.raises(ValueError, match="2-D"):
            store.save("a.png", np.zeros((2, 2, 2), bool))
        with pytest.raises(ValueError, match="finite"):
            store.save("a.png", np.zeros((2, 2), bool), threshold=float("nan"))
        with pytest.raises(ValueError, match="relative posix"):
            store.save("../a.png", np.zeros((2, 2), bool))
        assert store.infos() == {}


def test_orphans_are_removed_only_when_old(tmp_path):
    with Project.open(tmp_path) as project:
        store = CorrectedMasks(project)
        kept = store.save("a.png", _mask(3)).file
        orphan = store.folder / "deadbeef-000000000000.png"
        orphan.write_bytes(b"x")
        assert store.remove_orphans() == []  # young: may be another instance's save in flight
        old = time.time() - 3600
        os.utime(orphan, (old, old))
        assert store.remove_orphans() == [orphan.name]
        assert [p.name for p in store.folder.iterdir()] == [kept]


# A child that saves masks 0, 1, 2, ... for one image and prints each index once save() returned. With a
# pause point, core.atomic stops (announced) just before renaming the temporary file (``replace``) or just
# after it, before the database row changes (``fsync_dir``).
_SAVER = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    import lrpseg.core.atomic as atomic
    from lrpseg.core.corrected_masks import CorrectedMasks
    from lrpseg.core.project import Project

    folder, pause, pause_at_save = sys.argv[1], sys.argv[2], int(sys.argv[3])
    count = [0]
    def stop(real):
        def wrapper(*args, **kwargs):
            if count[0] >= pause_at_save:
                print("paused", flush=True)
                time.sleep(600)
            return real(*args, **kwargs)
        return wrapper
    if pause == "replace":
        class Os:
            def __getattr__(self, name):
                return getattr(os, name)
        proxy = Os()
        proxy.replace = stop(os.replace)
        proxy.link = stop(os.link)
        atomic.os = proxy
    elif pause == "fsync_dir":
        atomic._fsync_dir = stop(atomic._fsync_dir)
    store = CorrectedMasks(Project.open(folder))
    while True:
        i = count[0]
        store.save("img.png", np.random.default_rng(i).random((256, 256)) < 0.5, author=f"save {i}")
        print("saved", i, flush=True)
        count[0] += 1
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
@pytest.mark.parametrize(("pause", "kill_after"), [("none", 3), ("none", 9), ("replace", 4), ("fsync_dir", 5)])
def test_sigkill_during_save_leaves_the_old_mask_or_the_new_one(tmp_path, pause, kill_after):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    child = subprocess.Popen([sys.executable, "-c", _SAVER, str(tmp_path), pause, str(kill_after)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    lines: list[str] = []
    try:
        while True:
            line = child.stdout.readline()
            assert line, f"child ended early: {child.stderr.read()[-2000:]}"
            lines.append(line.strip())
            if line.startswith("paused") or (pause == "none" and len(lines) >= kill_after):
                break
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        lines += child.stdout.read().split("\n")
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    saved = [int(line.split()[1]) for line in lines if line.startswith("saved")]
    last = saved[-1]
    with Project.open(tmp_path) as project:
        store = CorrectedMasks(project)
        info = store.info("img.png")
        index = int(info.author.split()[1])
        assert index in (last, last + 1)  # the save in flight may have committed just before the kill
        if pause != "none":
            assert index == last  # paused before the row changed: the previous mask stays
        mask = store.load("img.png")  # the checksum and size checks pass: the file is complete
        np.testing.assert_array_equal(mask, np.random.default_rng(index).random((256, 256)) < 0.5)
        leftovers = [p for p in store.folder.iterdir() if p.name != info.file]
        for path in leftovers:  # an unfinished save leaves at most its own file, which no row names
            old = time.time() - 3600
            os.utime(path, (old, old))
        store.remove_orphans()
        assert [p.name for p in store.folder.iterdir()] == [info.file]
