"""The supervised baseline of the paper (§3.2.2): a U-Net (Ronneberger et al., 2015) trained on pixel masks.

Architecture: :class:`lrpseg.core.student.unet.UNet` at full resolution (the network the student segmenter
also uses), ``base`` channels at the top (32 here; the original has 64), doubling per step.

Training: random S×S crops with flips (the classifier's augmentation), then, as Ronneberger et al., random
affine maps (rotation, scale, shear, shift) and elastic deformation (displacement vectors drawn on a coarse
3×3 grid, Gaussian with 10 px standard deviation at S = 224, interpolated bicubically), one
``grid_sample`` per batch on the device for image and mask together; the mask is resampled bilinearly and
binarised at 0.5. Loss: binary cross-entropy + soft Dice. AdamW with a cosine learning-rate decay; the
epoch with the best validation IoU (at 0.5) is kept.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from lrpseg.core.metrics import segmentation_metrics
from lrpseg.core.student.unet import UNet, dice_bce_loss
from mt_data import DeviceImages
from mt_train import autocast
from torch import nn


def deform(
    images: torch.Tensor,
    masks: torch.Tensor,
    generator: torch.Generator,
    rotation_deg: float = 15.0,
    scale: tuple[float, float] = (0.85, 1.15),
    shear_deg: float = 8.0,
    shift: float = 0.05,
    elastic_px: float = 10.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random affine + elastic deformation of a batch, the same for each image and its mask.

    Parameters
    ----------
    images
        (N, C, S, S) float.
    masks
        (N, 1, S, S) float in {0, 1}.
    generator
        Seeded random source on the batch's device.
    elastic_px
        Standard deviation of the coarse-grid displacements, in pixels at S = 224 (scaled with S).
    """
    n, _, size, _ = images.shape
    device = images.device

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, device=device, generator=generator)

    angle = torch.deg2rad(uniform(-rotation_deg, rotation_deg))
    shear = torch.deg2rad(uniform(-shear_deg, shear_deg))
    zoom = uniform(*scale)
    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0] = cos / zoom
    theta[:, 0, 1] = (-sin + cos * tan) / zoom
    theta[:, 1, 0] = sin / zoom
    theta[:, 1, 1] = (cos + sin * tan) / zoom
    theta[:, :, 2] = (torch.rand(n, 2, device=device, generator=generator) * 2 - 1) * shift * 2
    grid = F.affine_grid(theta, (n, 1, size, size), align_corners=False)
    sigma = elastic_px * size / 224.0 * 2.0 / size  # pixels -> normalised coordinates
    coarse = torch.randn(n, 2, 3, 3, device=device, generator=generator) * sigma
    displacement = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)
    grid = grid + displacement.permute(0, 2, 3, 1)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    warped_masks = F.grid_sample(masks, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return warped, (warped_masks > 0.5).float()


@torch.no_grad()
def predict_unet(model: nn.Module, batch: torch.Tensor, batch_size: int = 32, amp: bool = False) -> np.ndarray:
    """Damage probability maps (N, S, S) float32 for normalised inputs (N, 3, S, S)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(batch), batch_size):
        x = batch[start : start + batch_size].to(device)
        with autocast(device, amp):
            logits = model(x)
        out.append(torch.sigmoid(logits.float())[:, 0].cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0,) + tuple(batch.shape[2:]), np.float32)


def train_unet(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    val_batch: torch.Tensor,
    val_masks: np.ndarray,
    *,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
    epochs: int = 150,
    base: int = 32,
    batch_size: int = 8,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    amp: bool = False,
    validate_every: int = 5,
    progress: Callable[[str], None] | None = None,
) -> tuple[UNet, dict]:
    """Train the U-Net on (image, mask) pairs; keep the epoch with the best validation IoU at 0.5.

    Parameters
    ----------
    images, masks
        uint8 images at least ``input_size`` on a side, and their bool masks of the same size.
    val_batch, val_masks
        Normalised validation crops (N, 3, S, S) and their bool masks (N, S, S).

    Returns
    -------
    model, summary
        The U-Net in eval mode, and a JSON-serialisable training summary.
    """
    started = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    model = UNet(base=base).to(device)
    data = DeviceImages(images, masks, mean, std, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = max(1, math.ceil(len(data) / batch_size))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps, eta_min=lr * 0.01)
    best = {"epoch": 0, "val_iou": -1.0}
    best_state = copy.deepcopy(model.state_dict())
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        order = rng.permutation(len(data))
        total = torch.zeros((), device=device)
        for step in range(steps):
            idx = order[step * batch_size : (step + 1) * batch_size]
            if len(idx) < 2:  # batch norm needs two samples
                idx = order[:2] if len(order) >= 2 else idx
            x, m = data.random_crops(idx, input_size, rng)
            x, m = deform(x, m, generator)
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, amp):
                logits = model(x)
            loss = dice_bce_loss(logits.float(), m)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.detach()
        if epoch % validate_every == 0 or epoch == epochs:
            prob = predict_unet(model, val_batch, amp=amp)
            val_iou = float(segmentation_metrics(prob >= 0.5, val_masks)["iou"]) if len(prob) else float("nan")
            record = {"epoch": epoch, "loss": float(total) / steps, "val_iou": val_iou}
            history.append(record)
            if val_iou > best["val_iou"] or not len(prob):
                best = {"epoch": epoch, "val_iou": val_iou}
                best_state = copy.deepcopy(model.state_dict())
            if progress:
                progress(f"U-Net epoch {epoch}/{epochs} loss {record['loss']:.4f} val IoU {val_iou:.3f}")
    model.load_state_dict(best_state)
    model.eval()
    summary = {
        "epochs": epochs,
        "best_epoch": best["epoch"],
        "val_iou": best["val_iou"],
        "base_channels": base,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "amp": bool(amp and device.type == "cuda"),
        "n_train": len(data),
        "history": history,
        "seconds": round(time.perf_counter() - started, 2),
    }
    return model, summary
