"""The Markdown report of the Magnetic Tile benchmark: our numbers beside the paper's, and how they were made."""

from __future__ import annotations

import math
from pathlib import Path

from mt_eval import HEAD_LABELS, PAPER_TABLE2, PAPER_TABLE3, PAPER_UNET


def _f(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def best_lrp(segmentation: dict) -> tuple[str, dict]:
    """The key (e.g. ``head/rules/segmenter``) with the highest IoU, and its metrics."""
    key = max(segmentation, key=lambda k: -1.0 if math.isnan(segmentation[k]["iou"]) else segmentation[k]["iou"])
    return key, segmentation[key]


def best_student(students: dict) -> tuple[str | None, dict | None]:
    """The student key with the highest IoU at its own threshold, and its metrics (None, None without any)."""
    if not students:
        return None, None
    return best_lrp({key: value["metrics"] for key, value in students.items()})


def result_line(run: dict) -> str:
    """``RESULT best_lrp_iou=... best_config=... unet_iou=... student_iou=... balanced_accuracy_128n=... ...``."""
    key, best = best_lrp(run["segmentation"])
    cls = run["classification"]
    unet = run.get("unet")
    _, student = best_student(run.get("students") or {})
    device = run["device"].replace(" ", "_")
    return (
        f"RESULT best_lrp_iou={_f(best['iou'], 4)} best_config={key} "
        f"unet_iou={_f(unet['metrics']['iou'], 4) if unet else '–'} "
        f"student_iou={_f(student['iou'], 4) if student else '–'} "
        f"balanced_accuracy_128n={_f(cls.get('128n', {}).get('balanced_accuracy'), 4)} "
        f"balanced_accuracy_onefc={_f(cls.get('onefc', {}).get('balanced_accuracy'), 4)} device={device}"
    )


def _config_table(run: dict) -> list[str]:
    cfg = run["config"]
    rows = ["| setting | value |", "|---|---|"]
    for key in (
        "input_size", "width", "heads", "epochs", "batch_size", "lr_conv", "lr_fc", "optimizer",
        "weight_decay", "patience", "trainer", "amp", "crop_policy", "rule_sets", "maxpool", "limit", "unet_epochs",
        "unet_base", "unet_train", "seed",
    ):  # fmt: skip
        if key in cfg:
            rows.append(f"| {key} | {cfg[key]} |")
    rows.append(f"| device | {run['device']} |")
    rows.append(f"| torch | {run['torch']} |")
    return rows


def _data_section(run: dict) -> list[str]:
    data = run["dataset"]
    lines = [
        "## Data, near-duplicate groups and split",
        "",
        f"{data['n_images']} images (damaged = MT_Blowhole + MT_Crack, undamaged = MT_Free) in "
        f"{data['n_groups']} capture groups, found by image similarity (`benchmarks/mt_split.py`: high-pass "
        "thumbnails at 1/4 size, best normalised cross-correlation of the smaller image's centre over all "
        "shifts in the larger, complete-linkage clustering per class cut at correlation 0.35, clusters joined "
        "where a pair correlates at 0.7 or more). Whole groups "
        "go to one set; each class is split 60/20/20 as closely as whole groups allow.",
        "",
        "| class | images | groups | largest | single images | train | val | test |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, c in data["classes"].items():
        lines.append(
            f"| {name} | {c['images']} | {c['groups']} | {c['largest_group']} | {c['singletons']} | "
            f"{c['train']} | {c['val']} | {c['test']} |"
        )
    check = data.get("frame_runs")
    if check:
        lines += [
            "",
            f"Check against the frame numbers in the file names (never read by the grouping): of "
            f"{check['runs']} runs of nearby frame numbers, {check['runs_in_one_group']} fall in one group; "
            f"{check['groups_in_one_run']} of {check['groups']} groups lie in one run. On the full dataset we "
            "inspected the differences: runs split across groups are two regions photographed back to back "
            "(two exp1-exp6 series less than 150 frames apart, or interleaved); groups that span runs join "
            "captures of one region taken again later (or, for a few MT_Free groups, tiles whose grinding "
            "marks look alike), which only makes the split more conservative.",
        ]
    return lines + [""]


def _table2(run: dict) -> list[str]:
    lines = [
        "## Classification on the test set (paper Table 2)",
        "",
        "Test images as centre crops plus their horizontally and vertically flipped copies; damaged = "
        "P(damaged) >= 0.5.",
        "",
        "| model | balanced accuracy | TPR | TNR | paper bal. acc. | paper TPR | paper TNR | epochs run (best) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for head, m in run["classification"].items():
        paper = PAPER_TABLE2[head]
        lines.append(
            f"| {HEAD_LABELS[head]} | {_f(m['balanced_accuracy'])} | {_f(m['tpr'])} | {_f(m['tnr'])} | "
            f"{paper[0]:.3f} | {paper[1]:.3f} | {paper[2]:.3f} | {m['epochs_run']} ({m['best_epoch']}) |"
        )
    pretraining = run.get("pretraining")
    if pretraining:
        lines += [
            "",
            f"Both classifiers started from convolutions pretrained with {pretraining['method']} on the "
            f"{pretraining['images']} training images, labels unused: {pretraining['epochs']} epochs, batch "
            f"{pretraining['batch_size']}, loss {_f(pretraining['loss_first_epoch'])} in the first epoch, "
            f"{_f(pretraining['loss_last_epoch'])} in the last.",
        ]
    return lines + [""]


def _table3(run: dict) -> list[str]:
    lines = [
        "## Segmentation of the damaged test images (paper Table 3)",
        "",
        f"{run['n_seg_crops']} crops (damaged test images, centre crop + 2 flips), pixels pooled (micro). "
        "IoU, precision (P) and recall (R) at each segmenter's default threshold; mean IoU per crop; AP from "
        "the score maps; gated IoU: crops the classifier calls undamaged get an empty mask (the product's "
        "behaviour); marked: the mean share of a crop's pixels in the mask (the true damage covers the no-skill "
        f"precision, {_f(run['no_skill_precision'], 4)}).",
        "",
        "| model | rule set | segmenter | IoU | P | R | mean IoU | AP | gated IoU | marked | paper IoU | paper P "
        "| paper R |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, m in run["segmentation"].items():
        head, rule_set, method = key.split("/")
        paper = PAPER_TABLE3.get((head, rule_set, method), (None, None, None))
        lines.append(
            f"| {HEAD_LABELS[head]} | {rule_set} | {method} | {_f(m['iou'])} | {_f(m['precision'])} | "
            f"{_f(m['recall'])} | {_f(m['mean_iou'])} | {_f(m['ap'])} | {_f(m.get('gated_iou'))} | "
            f"{_f(m.get('mask_fraction'))} | {_f(paper[0])} | {_f(paper[1])} | {_f(paper[2])} |"
        )
    unet = run.get("unet")
    if unet:
        m = unet["metrics"]
        lines.append(
            f"| U-Net | – | p >= 0.5 | {_f(m['iou'])} | {_f(m['precision'])} | {_f(m['recall'])} | "
            f"{_f(m['mean_iou'])} | {_f(m['ap'])} | – | {_f(m.get('mask_fraction'))} | {PAPER_UNET[0]:.3f} | "
            f"{PAPER_UNET[1]:.3f} | "
            f"{PAPER_UNET[2]:.3f} |"
        )
        s = unet["summary"]
        lines += [
            "",
            f"U-Net: {s['n_train']} training images, {s['epochs']} epochs, best validation IoU "
            f"{_f(s['val_iou'])} at epoch {s['best_epoch']}, {s['base_channels']} base channels.",
        ]
    return lines + [""]


def _students(run: dict) -> list[str]:
    students = run.get("students") or {}
    if not students:
        return []
    lines = [
        "## Students distilled from the explanations (image labels only)",
        "",
        "Same damaged test crops and metrics as above. Teacher = classifier, rule set and segmenter whose masks "
        "were the targets; rounds = self-training rounds done; t = the student's measured default threshold.",
        "",
        "| teacher | rule set | segmenter | rounds | IoU | P | R | mean IoU | AP | marked | t | IoU at 0.5 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, value in students.items():
        head, rule_set, method, rounds = key.split("/")
        m = value["metrics"]
        lines.append(
            f"| student of {HEAD_LABELS[head]} | {rule_set} | {method} | {rounds[1:]} | {_f(m['iou'])} | "
            f"{_f(m['precision'])} | {_f(m['recall'])} | {_f(m['mean_iou'])} | {_f(m['ap'])} | "
            f"{_f(m.get('mask_fraction'))} | "
            f"{_f(m['threshold'], 2)} | {_f(m['iou_at_0.5'])} |"
        )
    for head, costs in (run.get("student_costs") or {}).items():
        distil_s = costs["distil_seconds"]
        train_s = costs.get("classifier_train_seconds")
        mean_distil = sum(distil_s.values()) / max(1, len(distil_s))
        ratio = f"{mean_distil / train_s:.2f}×" if train_s else "–"
        lines += [
            "",
            f"Costs ({HEAD_LABELS[head]}): distillation {mean_distil:.0f} s per student on average (all rounds) "
            f"against {_f(train_s, 0)} s of classifier training ({ratio}); forward pass on the {costs['crops']} "
            f"test crops: student {costs['student_forward_s']} s, classifier {costs['classifier_forward_s']} s "
            f"({costs['student_forward_s'] / max(costs['classifier_forward_s'], 1e-9):.2f}×).",
        ]
    return lines + [""]


def write_report(run: dict, path: Path) -> str:
    """Write the Markdown report to ``path``; returns the RESULT line (the file's last line)."""
    path = Path(path)
    label = run["label"]
    lines = [
        "# Magnetic Tile benchmark (paper §3.4, §4.1)",
        "",
        f"**{label}**",
        "",
        f"Written by `benchmarks/magnetic_tile.py` on {run['date']}; command: `{run['command']}`.",
        "",
        *_config_table(run),
        "",
        *_data_section(run),
        *_table2(run),
        *_table3(run),
        *_students(run),
        "## Precision-recall curves (paper Figures 4 and 5)",
        "",
    ]
    for rule_set, figure in run["figures"].items():
        lines.append(f"![PR curves, rule set {rule_set}]({Path(figure).name})")
        lines.append("")
    if run.get("examples"):
        lines += [
            "## Example explanations",
            "",
            "Evenly spaced damaged test crops (centre crops, not flipped), each head with its best configuration "
            "above: the crop with the true damage outlined in green, the relevance (red positive, blue negative), "
            "the segmenter's mask with the same outline.",
            "",
        ]
        for head, figure in run["examples"].items():
            lines += [f"![Examples, {head}]({Path(figure).name})", ""]
    lines += ["## Time per stage", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {stage} | {seconds:.1f} |" for stage, seconds in run["timings"].items()]
    lines += ["", "## Protocol notes", ""]
    lines += [f"- {note}" for note in run["notes"]]
    result = result_line(run)
    lines += ["", result]
    path.write_text("\n".join(lines) + "\n")
    return result
