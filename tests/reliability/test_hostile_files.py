"""Hostile model and project files: loading never runs code from a file; a checkpoint whose weights do not
fit its own description, or from a newer format, is refused with a message that says what is wrong."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from lrpseg.core.checkpoint import FORMAT_VERSION, METADATA_KEY, CheckpointError, load_checkpoint
from lrpseg.core.cli import main as lrpseg_main
from lrpseg.core.models import WeightsUnavailableError, build_vgg_a, load_imagenet_conv_weights
from lrpseg.core.project import Project
from reliability_helpers import ROOT, run_python, save_slim_model
from safetensors import safe_open
from safetensors.torch import save_file


class _WritesAFile:
    """Unpickling this calls ``open(target, "w")``: proof that code from the file ran."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def _plant(folder: Path, marker: Path) -> dict[str, Path]:
    """Files that run code when unpickled, under names a user might pass as a model."""
    payload = pickle.dumps({"state_dict": _WritesAFile(marker)})
    files = {
        "pickle.pt": payload,
        "pickle.safetensors": payload,
        "pickle.pth": payload,
        "pickle_protocol0.ckpt": pickle.dumps(_WritesAFile(marker), protocol=0),
    }
    paths = {}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        paths[name] = folder / name
    torch.save({"model": _WritesAFile(marker)}, folder / "torch_zip.pt")  # torch.save's zip + data.pkl
    paths["torch_zip.pt"] = folder / "torch_zip.pt"
    return paths


def test_planted_pickles_are_hostile(tmp_path):
    """Control: the planted files really write a file when loaded the unsafe way."""
    marker = tmp_path / "ran"
    for name, path in _plant(tmp_path, marker).items():
        if name == "torch_zip.pt":
            torch.load(path, weights_only=False)
        else:
            pickle.loads(path.read_bytes())
        assert marker.exists(), name
        marker.unlink()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_loading_planted_pickles_never_runs_them(tmp_path, capsys):
    marker = tmp_path / "ran"
    planted = _plant(tmp_path, marker)
    images = tmp_path / "images"
    images.mkdir()
    for name, path in planted.items():
        with pytest.raises(CheckpointError, match=re.escape(name)) as info:
            load_checkpoint(path)
        assert "pickle" in str(info.value) or "safetensors" in str(info.value)
        # The command line: one line, exit code 1, no traceback.
        code = lrpseg_main(["segment", str(images), "--model", str(path), "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert code == 1 and err.startswith("lrpseg segment: error: ") and name in err
        assert "Traceback" not in err
    full_width = build_vgg_a(width=1.0, input_size=32)  # --imagenet reads torchvision weight files
    for name in ("pickle.pth", "torch_zip.pt"):
        with pytest.raises(WeightsUnavailableError, match=re.escape(name)) as info:
            load_imagenet_conv_weights(full_width, planted[name])
        assert "refused" in str(info.value) and "weights_only=False" not in str(info.value)
    assert not marker.exists()


def test_planted_pickle_in_the_project_cache_is_not_loaded(tmp_path):
    marker = tmp_path / "ran"
    with Project.open(tmp_path) as project:
        project.store_relevance("a.png", "m", "ours", np.zeros((4, 4), np.float32))
        (name,) = [p for p in project.cache_dir.iterdir() if p.suffix == ".npy"]
        evil = np.empty(1, dtype=object)
        evil[0] = _WritesAFile(marker)
        np.save(name, evil, allow_pickle=True)  # an object array: a pickle inside the .npy
        assert project.load_relevance("a.png", "m", "ours") is None
    assert not marker.exists()


def test_no_unsafe_loader_in_the_code():
    """No call in core/ or app/ that can unpickle: the guarantee above holds for every entry point."""
    unsafe = re.compile(
        r"pickle\.loads?\(|allow_pickle\s*=\s*True|weights_only\s*=\s*False|"
        r"torch\.load\((?![^)]*weights_only\s*=\s*True)|(?<![.\w])(eval|exec)\(|jsonpickle|dill\.|joblib\.load"
    )
    hits = []
    for path in sorted((ROOT / "core").rglob("*.py")) + sorted((ROOT / "app").rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if unsafe.search(line.split("#")[0]):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert hits == []


# ------------------------------------------------------------------------------------- mismatched checkpoints
def _parts(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    with safe_open(str(path), "pt") as handle:
        return json.loads(handle.metadata()[METADATA_KEY]), {k: handle.get_tensor(k) for k in handle.keys()}


def _forge(path: Path, meta: dict, tensors: dict[str, torch.Tensor]) -> Path:
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(meta)})
    return path


@pytest.fixture(scope="module")
def described(tmp_path_factory):
    """Metadata of a 128n, width 0.125, 64 px checkpoint, and the tensors of other models."""
    folder = tmp_path_factory.mktemp("checkpoints")
    save_slim_model(folder / "good.safetensors", input_size=64)
    others = {
        "another_head": dict(head="onefc", width=0.125, input_size=64),
        "another_width": dict(head="128n", width=0.25, input_size=64),
        "another_input_size": dict(head="128n", width=0.125, input_size=32),
    }
    tensors = {}
    for name, kwargs in others.items():
        save_slim_model(folder / f"{name}_real.safetensors", **kwargs)
        tensors[name] = _parts(folder / f"{name}_real.safetensors")[1]
    return folder, _parts(folder / "good.safetensors")[0], tensors


@pytest.mark.parametrize(
    "case, hint",
    [
        ("another_head", "another head or architecture"),
        ("another_width", "another width or input size"),
        ("another_input_size", "another width or input size"),
    ],
)
def test_weights_of_another_model_are_refused_clearly(described, tmp_path, capsys, case, hint):
    folder, meta, tensors = described
    path = _forge(tmp_path / f"{case}.safetensors", meta, tensors[case])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message
    assert "head '128n', width 0.125, input size 64" in message  # what the metadata claims
    assert hint in message
    assert "classifier.fc" in message  # which tensor does not fit
    assert len(message) < 600  # a message, not a dump
    code = lrpseg_main(["segment", str(folder), "--model", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and hint in err


def test_newer_format_version_is_refused_clearly(described, tmp_path):
    folder, meta, _ = described
    _, tensors = _parts(folder / "good.safetensors")
    path = _forge(tmp_path / "future.safetensors", dict(meta, format_version=FORMAT_VERSION + 1), tensors)
    with pytest.raises(CheckpointError, match=r"future\.safetensors.*newer lrpseg.*update lrpseg"):
        load_checkpoint(path)


def test_absurd_model_description_is_refused_not_allocated(described, tmp_path):
    """Metadata claiming a 96 000 px input would need a ~300 GB first FC layer: a clear refusal, no crash.

    Run in a child with a 4 GB address-space limit, so a regression cannot take this machine's memory.
    """
    folder, meta, _ = described
    _, tensors = _parts(folder / "good.safetensors")
    path = _forge(tmp_path / "absurd.safetensors", dict(meta, input_size=32 * 3000), tensors)
    code = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
from lrpseg.core.checkpoint import CheckpointError, load_checkpoint
try:
    load_checkpoint(sys.argv[1])
except CheckpointError as error:
    print("refused:", error)
"""
    run = run_python(code, str(path))
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith("refused: ") and "absurd.safetensors" in run.stdout
    assert "input size 96000" in run.stdout
