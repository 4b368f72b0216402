"""Self-supervised pretraining of VGG-A's convolutions on unlabelled images: SimCLR (Chen et al., 2020).

The paper starts its classifiers from ImageNet weights, which cannot be fetched here. This is the substitute
the Magnetic Tile benchmark can try instead (``--pretrain-epochs``): the convolutions learn from the training
images alone, without their labels, by telling apart two random views of each image (random resized crop,
flips, quarter turns, brightness and contrast) from the views of the other images in the batch (NT-Xent
loss on a small projection head over globally pooled features). The encoder is then saved as an ordinary
lrpseg checkpoint, and :class:`core.train.TrainConfig` ``init_from`` starts both classifiers from it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from lrpseg.core.models import IMAGENET_MEAN, IMAGENET_STD, VGGA, build_vgg_a
from torch import nn


class ContrastiveNet(nn.Module):
    """VGG-A's convolutions, global average pooling and a two-layer projection head."""

    def __init__(self, encoder: VGGA, projection_dim: int = 64) -> None:
        super().__init__()
        self.features = encoder.features
        channels = [m for m in encoder.features.modules() if isinstance(m, nn.Conv2d)][-1].out_channels
        self.head = nn.Sequential(nn.Linear(channels, 256), nn.ReLU(), nn.Linear(256, projection_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss: each view must pick its partner among the 2N - 1 other views of the batch."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    similarity = z @ z.T / temperature
    similarity.fill_diagonal_(float("-inf"))
    n = len(z1)
    partners = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(similarity, partners)


def random_view(image: np.ndarray, size: int, rng: np.random.Generator) -> torch.Tensor:
    """One augmented view of a uint8 image: float (3, size, size) in [0, 1], before normalisation."""
    height, width = image.shape[:2]
    side = int(rng.integers(min(size // 2, min(height, width)), min(height, width) + 1))
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    crop = np.ascontiguousarray(image[top : top + side, left : left + side])
    x = torch.from_numpy(crop).float().div_(255.0)
    x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)
    x = F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False)[0].expand(3, -1, -1)
    if rng.random() < 0.5:
        x = x.flip(2)
    x = torch.rot90(x, int(rng.integers(0, 4)), dims=(1, 2))
    contrast, brightness = rng.uniform(0.6, 1.4), rng.uniform(-0.2, 0.2)
    return ((x - x.mean()) * contrast + x.mean() + brightness).clamp(0.0, 1.0)


def pretrain_encoder(
    images: Sequence[np.ndarray],
    *,
    width: float,
    input_size: int,
    epochs: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    temperature: float = 0.2,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: Callable[[str], None] = print,
) -> tuple[VGGA, dict]:
    """Train VGG-A's convolutions with SimCLR on ``images`` (uint8, labels unused).

    Returns
    -------
    encoder : VGGA
        A VGG-A (head "128n", random FC layers) whose convolutions hold the pretrained weights, on the CPU.
    summary : dict
        Settings, the mean loss of the first and last epoch, and the seconds taken.
    """
    if len(images) < 2:
        raise ValueError("contrastive pretraining needs at least two images")
    device = torch.device(device)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    encoder = build_vgg_a("128n", width=width, input_size=input_size)
    net = ContrastiveNet(encoder).to(device)
    optimiser = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-6)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    batch_size = min(batch_size, len(images))
    started, losses = time.perf_counter(), []
    net.train()
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(images))
        epoch_losses = []
        for start in range(0, len(order) - batch_size + 1, batch_size):  # full batches: NT-Xent wants negatives
            chosen = order[start : start + batch_size]
            views = [
                torch.stack([random_view(images[i], input_size, rng) for i in chosen]).to(device) for _ in range(2)
            ]
            z1, z2 = (net((v - mean) / std) for v in views)
            loss = nt_xent(z1, z2, temperature)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            epoch_losses.append(loss.item())
        losses.append(float(np.mean(epoch_losses)))
        if epoch == 1 or epoch % 10 == 0 or epoch == epochs:
            progress(f"  [pretrain] epoch {epoch}/{epochs} NT-Xent {losses[-1]:.3f}")
    summary = {
        "method": "SimCLR (NT-Xent)",
        "images": len(images),
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "temperature": temperature,
        "loss_first_epoch": losses[0],
        "loss_last_epoch": losses[-1],
        "seconds": round(time.perf_counter() - started, 1),
    }
    encoder.features = net.features.cpu()
    return encoder.eval(), summary
