"""Checkpoint round trip and refusal of everything that is not a complete, known-version checkpoint."""

import json
import os
import pickle

import pytest
import torch
from lrpseg.core import checkpoint
from lrpseg.core.checkpoint import FORMAT_VERSION, METADATA_KEY, CheckpointError, load_checkpoint, save_checkpoint
from lrpseg.core.models import build_vgg_a
from safetensors.torch import save_file


@pytest.fixture
def model():
    torch.manual_seed(0)
    net = build_vgg_a("128n", width=0.125, input_size=64, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    with torch.no_grad():
        for param in net.parameters():
            param.add_(0.01 * torch.randn_like(param))  # non-zero biases too
    return net.eval()


@pytest.fixture
def saved(tmp_path, model):
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, model, training={"epochs": 3, "val_bacc": 0.9})
    return path


def _rewrite_metadata(src, dst, edit):
    """Copy checkpoint ``src`` to ``dst`` with its metadata dict changed by ``edit``."""
    from safetensors import safe_open

    with safe_open(str(src), "pt") as handle:
        meta = json.loads(handle.metadata()[METADATA_KEY])
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    edit(meta, tensors)
    save_file(tensors, str(dst), metadata={METADATA_KEY: json.dumps(meta)})


@pytest.mark.parametrize("head", ["128n", "onefc"])
def test_round_trip_gives_bit_identical_outputs(tmp_path, head):
    torch.manual_seed(1)
    net = build_vgg_a(head, width=0.125, input_size=32, class_names=("ok", "crack")).eval()
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, net, training={"epochs": 1})
    loaded, meta = load_checkpoint(path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net(x), loaded(x))
    assert not loaded.training
    assert meta == {**net.config(), "format_version": FORMAT_VERSION, "training": {"epochs": 1}}
    assert loaded.class_names == ("ok", "crack")
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write left no temporary file


def test_round_trip_keeps_float64(tmp_path, model):
    path = tmp_path / "m64.safetensors"
    save_checkpoint(path, model.double())
    loaded, _ = load_checkpoint(path)
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_truncated_file_is_refused(tmp_path, saved):
    data = saved.read_bytes()
    for cut in (len(data) - 1, len(data) // 2, 5):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=f"cut{cut}.safetensors"):
            load_checkpoint(bad)


@pytest.mark.parametrize(
    "content", [b"\x89PNG\r\n\x1a\n" + bytes(200), os.urandom(4096), b""], ids=["png", "random", "empty"]
)
def test_foreign_files_are_refused(tmp_path, content):
    bad = tmp_path / "foreign.safetensors"
    bad.write_bytes(content)
    with pytest.raises(CheckpointError, match="foreign.safetensors"):
        load_checkpoint(bad)


def test_foreign_safetensors_file_is_refused(tmp_path):
    bad = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3)}, str(bad), metadata={"framework": "other"})
    with pytest.raises(CheckpointError, match="not an lrpseg checkpoint"):
        load_checkpoint(bad)


class _WritesAFile:
    """Unpickling this object opens (creates) a file: a stand-in for code carried by a pickle."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_pickle_carrying_code_is_refused_without_running_it(tmp_path):
    probe = tmp_path / "probe_written"
    pickle.loads(pickle.dumps(_WritesAFile(probe)))
    assert probe.exists()  # the payload really writes a file when unpickled
    marker = tmp_path / "marker_written"
    payload = pickle.dumps({"state_dict": _WritesAFile(marker)})
    for name in ("evil.safetensors", "evil.pt"):
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(CheckpointError, match=f"{name}.*pickle"):
            load_checkpoint(tmp_path / name)
    torch.save({"w": torch.zeros(2)}, tmp_path / "torch_save.pt")
    with pytest.raises(CheckpointError, match="torch_save.pt"):
        load_checkpoint(tmp_path / "torch_save.pt")
    assert not marker.exists()


def test_newer_format_version_is_refused(tmp_path, saved):
    newer = tmp_path / "newer.safetensors"
    _rewrite_metadata(saved, newer, lambda meta, _: meta.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(CheckpointError, match="newer.safetensors.*newer lrpseg"):
        load_checkpoint(newer)


@pytest.mark.parametrize(
    "key", ["head", "width", "input_size", "mean", "std", "class_names", "format_version"]
)
def test_missing_metadata_keys_are_refused(tmp_path, saved, key):
    bad = tmp_path / "nokey.safetensors"
    _rewrite_metadata(saved, bad, lambda meta, _: meta.pop(key))
    with pytest.raises(CheckpointError, match=f"nokey.safetensors.*lacks {key}"):
        load_checkpoint(bad)


def test_missing_or_misshapen_tensors_are_refused(tmp_path, saved):
    missing = tmp_path / "missing.safetensors"
    _rewrite_metadata(saved, missing, lambda _, tensors: tensors.pop("classifier.fc3.bias"))
    with pytest.raises(CheckpointError, match="missing.safetensors.*classifier.fc3.bias"):
        load_checkpoint(missing)
    wider = tmp_path / "wider.safetensors"
    _rewrite_metadata(saved, wider, lambda meta, _: meta.update(width=0.25))
    with pytest.raises(CheckpointError, match="wider.safetensors.*wrong shape"):
        load_checkpoint(wider)


def test_mismatched_file_is_refused_before_a_real_model_is_built(tmp_path, saved, monkeypatch):
    built_on = []
    build = checkpoint.build_vgg_a

    def recording_build(**kwargs):
        model = build(**kwargs)
        built_on.append(next(model.parameters()).device.type)
        return model

    monkeypatch.setattr(checkpoint, "build_vgg_a", recording_build)
    wider = tmp_path / "wider.safetensors"
    _rewrite_metadata(saved, wider, lambda meta, _: meta.update(width=0.25))
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_checkpoint(wider)
    assert built_on == ["meta"]  # the check needed no memory for the described model
    model, _ = load_checkpoint(saved)
    assert built_on == ["meta", "meta", "cpu"] and next(model.parameters()).device.type == "cpu"


def test_missing_file_and_bad_json(tmp_path, saved):
    with pytest.raises(CheckpointError, match="absent.safetensors"):
        load_checkpoint(tmp_path / "absent.safetensors")
    bad = tmp_path / "badjson.safetensors"
    save_file({"w": torch.zeros(1)}, str(bad), metadata={METADATA_KEY: "{not json"})
    with pytest.raises(CheckpointError, match="badjson.safetensors.*JSON"):
        load_checkpoint(bad)


def test_training_summary_must_be_json(tmp_path, model):
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(tmp_path / "x.safetensors", model, training={"when": object()})
    assert not list(tmp_path.iterdir())
