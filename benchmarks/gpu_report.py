"""The GPU suite's arithmetic and report (``benchmarks/gpu_suite.sh``): classifier epochs that fit, and gpu.md.

``epochs``: how many classifier epochs ``magnetic_tile.py`` can afford in the seconds left, from the training
rate that ``train_speed.py`` just measured with the same trainer (data on the device, bf16, batch 16, 224²).
``report``: ``gpu.md`` from the parts' JSON files, ending with
``RESULT lrp_ours_img_s_b64=<n> lrp_montavon_img_s_b64=<n> zennit_ours_img_s_b64=<n> train_1000_s=<s> device=<GPU>``.

Usage (the suite calls both)::

    python benchmarks/gpu_report.py epochs --train train_speed.json --n-train 675 --seconds 300
    python benchmarks/gpu_report.py report --lrp lrp_speed.json --train train_speed.json --mt magnetic_tile.json \\
        --stage "LRP speed|31|ok" ... --out gpu.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
from pathlib import Path

PAPER_EPOCHS = 100
MIN_EPOCHS = 10
FALLBACK_EPOCHS = 40
"""When the training rate was not measured (train_speed.py failed): few enough to fit on an H100 by the probe's
forward rate (3,122 images/s), with the suite's hard time limit behind it."""
VALIDATION_SHARE = 1.35
"""An epoch of magnetic_tile.py also validates on ~1/3 as many crops as it trains on (3 flips of 20 % of the
images, forward only): its time is about 1.35 times the training steps' alone."""
TARGETS = {"ours_img_s_b64": 890.0, "ours_x_forward": 3.5, "train_1000_s": 60.0, "best_lrp_iou": 0.466}
LRP_ROWS = ("forward", "gradient", "ours", "montavon", "epsilon_plus", "zennit_ours", "zennit_montavon",
            "zennit_epsilon_plus")


def _load(path: Path | None) -> dict | None:
    if path is None or not Path(path).is_file():
        return None
    return json.loads(Path(path).read_text())


def _run(train: dict | None, trainer: str) -> dict | None:
    return next((r for r in (train or {}).get("runs", []) if r["trainer"] == trainer), None)


def affordable_epochs(rate: float, n_train: int, seconds: float, heads: int = 2) -> int:
    """Classifier epochs for ``heads`` classifiers in ``seconds`` at ``rate`` training images/s, at most the
    paper's 100, at least 10."""
    per_epoch = VALIDATION_SHARE * n_train / max(rate, 1e-9)
    return int(max(MIN_EPOCHS, min(PAPER_EPOCHS, math.floor(seconds / (heads * per_epoch)))))


def _fmt(value, digits: int = 1) -> str:
    return "failed" if value is None else f"{value:.{digits}f}"


def _lrp_section(lrp: dict | None) -> list[str]:
    if lrp is None:
        return ["## LRP speed", "", "Did not finish (see the stage table and suite.log).", ""]
    batches = list(lrp["batches"])
    lines = [
        "## LRP speed (`benchmarks/lrp_speed.py`)",
        "",
        f"{lrp['device']}, torch {lrp['torch']}, zennit {lrp['zennit']}; VGG-A 128N width {lrp['width']:g}, "
        f"{lrp['size']}², random weights; {lrp['rounds']} interleaved rounds, fastest call of each method.",
        "",
        "| method | " + " | ".join(f"batch {b}: images/s | × forward" for b in batches) + " |",
        "|---|" + "---|---|" * len(batches),
    ]
    for name in LRP_ROWS:
        cells = []
        for b in batches:
            m = lrp["batches"][b]["methods"][name]
            cells += [f"{m['img_s']:.1f}", f"{m['ratio_wall']:.2f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    peaks = [
        f"batch {b}: {lrp['batches'][b]['peak_gib_so_far']} GiB"
        for b in batches
        if "peak_gib_so_far" in lrp["batches"][b]
    ]
    if peaks:
        lines += ["", "Peak GPU memory (cumulative over the run): " + ", ".join(peaks) + "."]
    return lines + [""]


def _train_section(train: dict | None) -> list[str]:
    if train is None:
        return ["## Training time", "", "Did not finish (see the stage table and suite.log).", ""]
    s = train["settings"]
    lines = [
        "## Training time (`benchmarks/train_speed.py`)",
        "",
        f"{train['device']}, torch {train['torch']}; {s['images']} labelled synthetic images at {s['size']}² "
        f"(split 80/20 as `lrpseg train` does), {s['epochs']} epochs, width {s['width']:g}, batch {s['batch_size']}, "
        "after an untimed warm-up call.",
        "",
        "| trainer | seconds | training images/s | epochs | amp | warm-up s |",
        "|---|---|---|---|---|---|",
    ]
    for r in train["runs"]:
        lines.append(
            f"| {r['trainer']} | {r['seconds']:.1f} | {r['train_images_per_s']:.1f} | {r['epochs_run']} | "
            f"{r['amp']} | {r['warm_up_s']:.1f} |"
        )
    lines += [
        "",
        "`core` is the product's loop (`core.train.fit`, what `lrpseg train` and the GUI run: fp32, crops made on "
        "the CPU); `device` keeps the images on the GPU (`benchmarks/mt_train.fit_on_device`, the Magnetic Tile "
        "trainer). `train_1000_s` in the RESULT line is the product's (`core`).",
        "",
    ]
    return lines


def _mt_section(mt: dict | None, mt_note: str) -> list[str]:
    lines = ["## Magnetic Tile (`benchmarks/magnetic_tile.py`)", ""]
    if mt_note:
        lines += [mt_note, ""]
    if mt is None:
        return lines + ["Did not finish (see the stage table and suite.log).", ""]
    from mt_report import result_line

    cfg = mt["config"]
    lines += [
        f"Command: `{mt['command']}`; device {mt['device']}; {mt['dataset']['n_images']} images; width "
        f"{cfg['width']:g}, input {cfg['input_size']}, classifier epochs {cfg['epochs']} (patience "
        f"{cfg['patience']}), U-Net {cfg['unet_base']} channels / {cfg['unet_epochs']} epochs, amp {cfg['amp']}.",
        "The full report is `magnetic_tile.md` beside this file (figures in `magnetic_tile_figures.tar.gz`).",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {stage} | {seconds:.1f} |" for stage, seconds in mt["timings"].items()],
        "",
        f"Paper: best LRP IoU {TARGETS['best_lrp_iou']} (128N, montavon, simple), U-Net 0.461. This run: "
        f"`{result_line(mt)}`",
        "",
    ]
    return lines


def write_gpu_report(args: argparse.Namespace) -> str:
    """Write gpu.md to every path in ``args.out``; return its RESULT line."""
    lrp, train, mt = _load(args.lrp), _load(args.train), _load(args.mt)
    b64, batch = None, None
    if lrp is not None:  # batch 64; the largest measured where 64 was not (the CPU rehearsal)
        batch = "64" if "64" in lrp["batches"] else list(lrp["batches"])[-1]
        b64 = lrp["batches"][batch]["methods"]
    core = _run(train, "core")
    rates = {name: (b64[name]["img_s"] if b64 else None) for name in ("ours", "montavon", "zennit_ours")}
    device = args.device.replace(" ", "_")
    result = (
        f"RESULT lrp_ours_img_s_b64={_fmt(rates['ours'])} lrp_montavon_img_s_b64={_fmt(rates['montavon'])} "
        f"zennit_ours_img_s_b64={_fmt(rates['zennit_ours'])} train_1000_s={_fmt(core and core['seconds'])} "
        f"device={device}"
    )
    targets = []
    if b64:
        ours = b64["ours"]
        targets.append(
            f"- LRP 'ours' at batch {batch}: {ours['img_s']:.0f} images/s, {ours['ratio_wall']:.2f}× the forward pass "
            f"(target ≥ {TARGETS['ours_img_s_b64']:.0f} images/s, ≤ {TARGETS['ours_x_forward']}×): "
            f"{'met' if ours['img_s'] >= TARGETS['ours_img_s_b64'] else 'missed'}."
        )
    for run in (train or {}).get("runs", []):
        verdict = "met" if run["seconds"] <= TARGETS["train_1000_s"] else "missed"
        targets.append(
            f"- Training, {run['trainer']} trainer: {run['seconds']:.1f} s (target ≤ {TARGETS['train_1000_s']:.0f} s): "
            f"{verdict}."
        )
    lines = [
        "# GPU suite (issue 17)",
        "",
        f"**{args.title}**",
        "",
        f"Written by `benchmarks/gpu_suite.sh` on {datetime.datetime.now().isoformat(timespec='seconds')}; "
        f"device: {args.device}.",
        "",
        "| part | seconds | status |",
        "|---|---|---|",
        *[f"| {name} | {seconds} | {status} |" for name, seconds, status in (s.split("|") for s in args.stage)],
        "",
        "## Targets",
        "",
        *(targets or ["- none measured"]),
        "",
        *_lrp_section(lrp),
        *_train_section(train),
        *_mt_section(mt, args.mt_note),
        result,
    ]
    text = "\n".join(lines) + "\n"
    for path in args.out:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return result


def main(argv: list[str] | None = None) -> int:
    """``epochs`` prints a number; ``report`` writes gpu.md and prints its RESULT line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("epochs", help="classifier epochs that fit in --seconds")
    e.add_argument("--train", type=Path, required=True, help="train_speed.py --json output")
    e.add_argument("--n-train", type=int, required=True, help="Magnetic Tile training images")
    e.add_argument("--seconds", type=float, required=True, help="seconds for both classifiers")
    r = sub.add_parser("report", help="write gpu.md")
    r.add_argument("--lrp", type=Path, default=None)
    r.add_argument("--train", type=Path, default=None)
    r.add_argument("--mt", type=Path, default=None, help="magnetic_tile.json")
    r.add_argument("--mt-note", default="", help="why the Magnetic Tile settings are what they are")
    r.add_argument("--stage", action="append", default=[], help="'name|seconds|status', one per part")
    r.add_argument("--device", required=True, help="the GPU's name (or 'cpu')")
    r.add_argument("--title", required=True)
    r.add_argument("--out", type=Path, nargs="+", required=True)
    args = p.parse_args(argv)
    if args.command == "epochs":
        run = _run(_load(args.train), "device")
        if run is None:
            print(FALLBACK_EPOCHS)
            return 0
        print(affordable_epochs(run["train_images_per_s"], args.n_train, args.seconds))
        return 0
    print(write_gpu_report(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
