"""``lrpseg segment --engine ray`` on a local Ray cluster, started once for the whole test session.

The Ray engine must export exactly what the local engine exports (same bytes), survive a killed worker and a
killed driver, and explain itself when Ray is missing or the cluster cannot do what was asked.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import ray
import torch
from lrpseg.core.batched import SegmentOptions
from lrpseg.core.checkpoint import save_checkpoint
from lrpseg.core.cli import main
from lrpseg.core.demo import make_demo
from lrpseg.core.export import PROVENANCE_NAME, REPORT_NAME
from lrpseg.core.export_layout import export_masks
from lrpseg.core.models import build_vgg_a
from lrpseg.core.ray_engine import RayEngine, RayOptions, RaySetupError, worker_count
from scaleout import worker_pids

LRPSEG = str(Path(sys.executable).with_name("lrpseg"))


@pytest.fixture(scope="session")
def ray_cluster():
    """One local cluster for the session (start-up costs seconds); yields its address for child processes.

    Four logical CPUs on the two-core test machine: actors of a killed driver or of a finished run release their
    CPU only when Ray has noticed, and a run must not wait for that."""
    context = ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield context.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Demo crops (crop mode), one large image (tile mode), one unreadable file and a small random model."""
    root = tmp_path_factory.mktemp("ray-data")
    make_demo(root, n_damaged=8, n_undamaged=8, size=40, seed=3)
    images = root / "images"
    large = np.random.default_rng(0).integers(0, 255, (90, 130), dtype=np.uint8)
    cv2.imwrite(str(images / "damaged" / "large.png"), large)
    (images / "undamaged" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    torch.manual_seed(0)
    model = root / "model.safetensors"
    save_checkpoint(model, build_vgg_a("128n", width=0.125, input_size=32), training={"note": "random"})
    return images, model


def _segment(images: Path, model: Path, out: Path, *extra: str) -> int:
    return main(["segment", str(images), "--model", str(model), "--out", str(out), "--batch-size", "2", *extra])


@pytest.fixture(scope="module")
def local_export(data, tmp_path_factory):
    images, model = data
    out = tmp_path_factory.mktemp("local") / "out"
    assert _segment(images, model, out) == 0
    return out


def _files(folder: Path) -> dict[str, bytes]:
    skip = {REPORT_NAME, PROVENANCE_NAME}
    files = [p for p in folder.rglob("*") if p.is_file() and p.name not in skip]
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in files}


def test_ray_export_is_the_local_export_byte_for_byte(ray_cluster, data, local_export, tmp_path, capsys):
    images, model = data
    out = tmp_path / "out"
    assert _segment(images, model, out, "--engine", "ray", "--workers", "2") == 0
    local, remote = _files(local_export), _files(out)
    assert len(local) >= 17 * 3 and local.keys() == remote.keys()
    assert {"damaged/large.png", "scores/damaged/large.npy", "scores/damaged/large.png"} <= local.keys()  # the tree
    assert [name for name in local if local[name] != remote[name]] == []
    report = json.loads((out / REPORT_NAME).read_text())
    assert report == json.loads((local_export / REPORT_NAME).read_text())
    broken = [r for r in report["images"] if r["image"].endswith("broken.png")]
    assert broken and "broken.png" in broken[0]["error"]
    provenance = json.loads((out / PROVENANCE_NAME).read_text())
    local_provenance = json.loads((local_export / PROVENANCE_NAME).read_text())
    assert (provenance["engine"], provenance["workers"]) == ("ray", 2)
    assert (local_provenance["engine"], local_provenance["workers"]) == ("local", 1)
    for key in ("engine", "workers", "created"):
        provenance.pop(key), local_provenance.pop(key)
    assert provenance == local_provenance
    assert "broken.png" in capsys.readouterr().err


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_worker_is_replaced_and_every_mask_is_written(ray_cluster, data, local_export, tmp_path):
    images, model = data
    out = tmp_path / "out"
    result: list[int] = []
    earlier = set(worker_pids())  # actors of earlier runs may still be shutting down
    run = threading.Thread(
        target=lambda: result.append(_segment(images, model, out, "--engine", "ray", "--workers", "2")), daemon=True
    )
    run.start()
    victim = _wait_for(lambda: sorted(set(worker_pids()) - earlier), 300, "a Ray worker of this run")[0]
    _wait_for(lambda: export_masks(out) or not run.is_alive(), 300, "the first mask")
    os.kill(victim, signal.SIGKILL)
    run.join(300)
    assert result == [0]
    local, remote = _files(local_export), _files(out)
    assert local.keys() == remote.keys() and all(local[name] == remote[name] for name in local)
    assert not list(out.rglob(".*.tmp"))


def _as_from_a_terminal() -> None:
    """Give the driver the SIGINT disposition of a command typed in a terminal.

    A shell starts background jobs with SIGINT ignored and children inherit that; Python then installs no
    KeyboardInterrupt handler, so a test run from a background job (as CI may be) would send Ctrl+C into nothing.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupted_run(
    command: list, env: dict, out: Path, stop: signal.Signals, total: int, attempts: int = 3
) -> tuple[int, str]:
    """Start the driver and send it ``stop`` once it has written a mask; return its exit code and its stderr.

    A driver that writes its last masks before the signal lands (on a loaded machine they can come in one burst)
    interrupted nothing, so it runs again on a fresh folder.
    """
    log = out.with_name("driver-stderr.txt")
    for _ in range(attempts):
        shutil.rmtree(out, ignore_errors=True)
        with log.open("w") as stderr:
            driver = subprocess.Popen(list(map(str, command)), env=env, stdout=subprocess.DEVNULL, stderr=stderr,
                                      preexec_fn=_as_from_a_terminal)  # fmt: skip
            try:
                _wait_for(lambda d=driver: export_masks(out) or d.poll() is not None, 180, "a first mask")
            finally:
                if driver.poll() is None:
                    driver.send_signal(stop)
                code = driver.wait(60)
        if len(export_masks(out)) < total:
            return code, log.read_text()
    raise AssertionError(f"the driver finished all {attempts} runs before {stop.name} could interrupt it")


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_an_interrupted_driver_keeps_its_masks_and_the_rerun_writes_the_rest(
    ray_cluster, data, local_export, tmp_path, stop
):
    images, model = data
    out = tmp_path / "out"
    command = [LRPSEG, "segment", images, "--model", model, "--out", out, "--batch-size", "2"]
    command += ["--engine", "ray", "--address", ray_cluster, "--workers", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    total = len(export_masks(local_export))
    code, stderr = _interrupted_run(command, env, out, stop, total)
    assert code == (130 if stop == signal.SIGINT else -signal.SIGKILL), f"driver ended with {code}"
    if stop == signal.SIGINT:  # Ctrl+C: one line, no traceback from Ray shutting down under a running executor
        assert "lrpseg segment: interrupted" in stderr and "Traceback" not in stderr, stderr[-3000:]
    before = {p.relative_to(out).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns) for p in export_masks(out).values()}
    files_before = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert 1 <= len(before) < total
    complete = _files(local_export)
    assert all(content == complete[name] for name, (content, _) in before.items()), "a half-written mask"
    again = subprocess.run(list(map(str, command)), env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert not list(out.rglob(".*.tmp")), "the rerun left the killed driver's temporary files behind"
    for name, (content, mtime) in before.items():
        path = out / name
        assert path.read_bytes() == content and path.stat().st_mtime_ns == mtime
    local, remote = _files(local_export), _files(out)
    assert local.keys() == remote.keys() and all(local[name] == remote[name] for name in local)
    report = json.loads((out / REPORT_NAME).read_text())
    assert report["summary"]["masks_written"] == total - len(before)
    # Images whose mask and score files were all there are kept unanalysed; one stopped between its mask and its
    # score files is analysed again (its mask kept).
    stems = {name.removesuffix(".png") for name in before}
    finished = {stem for stem in stems if {f"scores/{stem}.npy", f"scores/{stem}.png"} <= files_before}
    kept = {Path(r["image"]).relative_to(images).with_suffix("") for r in report["images"] if not r["analysed"]}
    assert {path.as_posix() for path in kept} == finished, "the rerun analysed finished images, or skipped others"


def test_a_worker_that_cannot_see_the_images_stops_the_run_naming_host_and_folder(ray_cluster, data, tmp_path):
    _, model = data
    missing = tmp_path / "not-mounted"
    with RayEngine(RayOptions(workers=1)) as engine, pytest.raises(RaySetupError, match="cannot see the image folder"):
        list(engine.segment([missing / "a.png", missing / "b.png"], model, SegmentOptions()))


def test_without_ray_the_ray_engine_says_how_to_install_it(data, tmp_path, monkeypatch, capsys):
    images, model = data
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.delitem(sys.modules, "lrpseg.core.ray_engine", raising=False)
    assert _segment(images, model, tmp_path / "out", "--engine", "ray") == 1
    assert "pip install 'lrpseg[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_gpu_and_engine_flags_are_checked_before_any_work(data, tmp_path, capsys):
    images, model = data
    with pytest.raises(RaySetupError, match="has 0 GPUs"):
        worker_count(RayOptions(gpus_per_worker=1), {"CPU": 8.0})
    with pytest.raises(RaySetupError, match="need 4 GPUs"):
        worker_count(RayOptions(workers=4, gpus_per_worker=1), {"CPU": 8.0, "GPU": 2.0})
    assert worker_count(RayOptions(gpus_per_worker=0.5), {"CPU": 8.0, "GPU": 2.0}) == 4
    assert worker_count(RayOptions(), {"CPU": 6.0}) == 6
    with pytest.raises(ValueError, match="--workers"):
        RayOptions(workers=0)
    assert _segment(images, model, tmp_path / "out", "--gpus-per-worker", "1") == 1
    assert "only apply with --engine ray" in capsys.readouterr().err
