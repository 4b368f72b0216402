"""The GPU suite's pieces on the CPU: lrp_speed and train_speed JSON, the epoch budget, gpu.md's RESULT line."""

import json
import re
import subprocess
from pathlib import Path

import gpu_report
import lrp_speed
import numpy as np
import pytest
import torch
import train_speed

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "gpu_suite.sh"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_affordable_epochs_fit_the_seconds_and_stay_between_10_and_the_papers_100():
    # 675 images at 1000 images/s: 0.675 s of steps, 0.91 s with validation, per head and epoch
    assert gpu_report.affordable_epochs(1000.0, 675, 2 * 0.91125 * 37) == 37
    assert gpu_report.affordable_epochs(1e6, 675, 300) == 100
    assert gpu_report.affordable_epochs(1.0, 675, 300) == 10


def test_synthetic_images_repeat_the_distinct_ones_with_both_classes():
    images, targets = train_speed.synthetic_images(10, 32, 4, seed=0)
    assert len(images) == 10 and images[0].shape == (32, 32)
    assert images[4] is images[0] and not np.array_equal(images[0], images[1])
    assert list(targets) == [1, 0, 1, 0, 1, 0, 1, 0, 1, 0]


def test_speed_scripts_feed_gpu_md_whose_last_line_is_the_result(tmp_path, capsys):
    lrp_json, train_json, gpu_md = tmp_path / "lrp.json", tmp_path / "train.json", tmp_path / "gpu.md"
    lrp_speed.main(
        ["--size", "32", "--width", "0.125", "--batch-sizes", "1", "2", "--rounds", "1", "--json", str(lrp_json)]
    )
    lrp = json.loads(lrp_json.read_text())
    assert set(lrp["batches"]) == {"1", "2"}
    assert set(lrp["batches"]["2"]["methods"]) == set(gpu_report.LRP_ROWS)
    ours = lrp["batches"]["2"]["methods"]["ours"]
    assert ours["img_s"] == pytest.approx(2 / ours["min_s"])

    train_speed.main(
        ["--images", "8", "--distinct", "4", "--size", "32", "--epochs", "2", "--width", "0.125",
         "--device", "cpu", "--json", str(train_json)]
    )  # fmt: skip
    runs = {r["trainer"]: r for r in json.loads(train_json.read_text())["runs"]}
    assert set(runs) == {"core", "device"}
    assert runs["core"]["epochs_run"] == 2 and runs["core"]["n_train"] + runs["core"]["n_val"] == 8
    # early stopping is off: exactly the epochs asked for
    assert runs["device"]["epochs_run"] == 2

    gpu_report.main(
        ["report", "--lrp", str(lrp_json), "--train", str(train_json), "--mt", str(tmp_path / "absent.json"),
         "--stage", "LRP speed|3|ok", "--device", "NVIDIA H200", "--title", "test", "--out", str(gpu_md)]
    )  # fmt: skip
    text = gpu_md.read_text()
    last = text.rstrip("\n").splitlines()[-1]
    match = re.fullmatch(
        r"RESULT lrp_ours_img_s_b64=(\S+) lrp_montavon_img_s_b64=(\S+) zennit_ours_img_s_b64=(\S+) "
        r"train_1000_s=(\S+) device=(\S+)",
        last,
    )
    assert match, last
    methods = lrp["batches"]["2"]["methods"]
    assert float(match[1]) == pytest.approx(methods["ours"]["img_s"], abs=0.05)
    assert float(match[3]) == pytest.approx(methods["zennit_ours"]["img_s"], abs=0.05)
    assert float(match[4]) == pytest.approx(runs["core"]["seconds"], abs=0.05)
    assert match[5] == "NVIDIA_H200"
    assert "| LRP speed | 3 | ok |" in text and "Did not finish" in text  # the missing Magnetic Tile run


def test_suite_without_outdir_explains_its_usage():
    done = subprocess.run(["bash", str(SUITE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "usage" in done.stderr and "--cpu-tiny" in done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_suite_refuses_to_run_without_cuda_unless_asked_for_the_cpu_rehearsal(tmp_path):
    done = subprocess.run(["bash", str(SUITE), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "sees no CUDA GPU" in done.stdout and "--cpu-tiny" in done.stdout  # stderr goes through the log
    assert "sees no CUDA GPU" in (tmp_path / "suite.log").read_text()
    assert not (tmp_path / "gpu.md").exists()
