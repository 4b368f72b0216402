"""core.workflow and core.model_registry: model identity by content, thresholds keyed by model, the project's
workflow."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import torch
from lrpseg.core.checkpoint import save_checkpoint
from lrpseg.core.lrp import DEFAULT_RULE_SET
from lrpseg.core.model_registry import ModelRegistry, model_id
from lrpseg.core.models import build_vgg_a
from lrpseg.core.project import Project
from lrpseg.core.workflow import ThresholdPolicy, Workflow, WorkflowError, adopt_unkeyed_thresholds, threshold_key


def _checkpoint(path, seed: int):
    torch.manual_seed(seed)
    save_checkpoint(path, build_vgg_a(width=0.0625, input_size=32))
    return path


def test_model_identity_is_the_content_not_the_name(tmp_path):
    first = _checkpoint(tmp_path / "model.safetensors", seed=0)
    old = model_id(first)
    copy = tmp_path / "copy.safetensors"
    shutil.copy(first, copy)
    assert model_id(copy) == old  # same bytes, same model
    _checkpoint(first, seed=1)  # retrained under the same name
    assert model_id(first) != old


def test_registry_reuses_a_loaded_file_and_keeps_only_the_latest(tmp_path):
    registry = ModelRegistry(keep=1)
    a = _checkpoint(tmp_path / "a.safetensors", seed=0)
    b = _checkpoint(tmp_path / "b.safetensors", seed=1)
    cpu = torch.device("cpu")
    first = registry.load(a, cpu)
    assert registry.load(a, cpu) is first
    assert registry.load(b, cpu).path == b
    assert registry.load(a, cpu) is not first  # dropped when b came


def test_thresholds_belong_to_one_model_rule_set_and_segmenter(tmp_path):
    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((8, 8), np.uint8))
    with Project.open(tmp_path) as project:
        ThresholdPolicy(project, "sha256-a", "ours", "bmm").set_override("x.png", 0.3)
        assert ThresholdPolicy(project, "sha256-a", "ours", "bmm").override("x.png") == 0.3
        assert ThresholdPolicy(project, "sha256-b", "ours", "bmm").override("x.png") is None  # retrained model
        assert ThresholdPolicy(project, "sha256-a", "ours", "gmm").override("x.png") is None
        project.set_threshold_override("x.png", "montavon/simple", 0.7)  # stored by an older lrpseg
        assert adopt_unkeyed_thresholds(project, "sha256-a") == 1
        assert project.threshold_override("x.png", threshold_key("sha256-a", "montavon", "simple")) == 0.7
        assert project.threshold_overrides("montavon/simple") == {}


def test_workflow_of_a_project_without_model_says_so(tmp_path):
    with Project.open(tmp_path) as project, pytest.raises(WorkflowError, match="no model yet"):
        Workflow.from_project(project, torch.device("cpu"))


def test_workflow_reads_the_projects_model_and_choices(tmp_path):
    model = _checkpoint(tmp_path / "m.safetensors", seed=0)
    with Project.open(tmp_path) as project:
        project.model_path = model
        project.set_setting("segmenter", "gmm")
        workflow = Workflow.from_project(project, torch.device("cpu"))
        assert workflow.model.model_id == model_id(model) and workflow.segmenter == "gmm"
        assert workflow.thresholds.key == threshold_key(model_id(model), DEFAULT_RULE_SET, "gmm")
