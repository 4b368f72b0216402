"""Images and masks of the Magnetic Tile benchmark, prepared the paper's way (§3.4), and device-side batches.

Geometry, in the order applied to each image and its mask:

1. ``scale`` (quick runs only): both are resized by ``input_size / 224`` so an S×S crop covers the same part
   of the tile as a 224×224 crop does at full size.
2. Upscaling: images below S on a side are upscaled (aspect kept, short side S), exactly as
   :func:`core.preprocess.prepare_eval` would (same shape rule, bilinear), but once, here, in uint8; the
   core functions then see images of at least S×S and crop without resizing again.
3. Crop policy ``"paper"``: the paper cropped every damaged image by hand "such that each random crop of a
   224 by 224 pixels large region contains the damage". We do this from the mask: per axis, a damage extent
   that fits in S is kept whole in every S-window; a longer one (cracks) keeps every window inside its
   extent. Without it about half of the damaged images show no damage in their centre crop (62 of 115
   blowholes, 26 of 57 cracks), so their image label would be wrong for what the classifier sees. Undamaged
   images are not cropped. ``"none"`` skips this step.

Masks are binarised with ``> 127`` and follow every step (bilinear on 0/255, then ``> 127`` again). The
segmentation metrics are computed on the S×S centre crop that the classifier saw: the mask is cut with the
same :class:`core.preprocess.Placement` that :func:`core.preprocess.prepare_eval` returns for the image.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from lrpseg.core.evaluate import read_mask
from lrpseg.core.images import read_image
from lrpseg.core.preprocess import Placement, prepare_eval

CROP_POLICIES = ("paper", "none")
REFERENCE_SIZE = 224


def _resize_mask(mask: np.ndarray, width: int, height: int, interpolation: int) -> np.ndarray:
    resized = cv2.resize(mask.astype(np.uint8) * 255, (width, height), interpolation=interpolation)
    return resized > 127


def upscale_pair(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Upscale image and mask so the short side is at least ``size`` (the rule of ``prepare_eval``)."""
    height, width = image.shape[:2]
    short = min(height, width)
    if short >= size:
        return image, mask
    scale = size / short
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return image, _resize_mask(mask, new_w, new_h, cv2.INTER_LINEAR)


def damage_window_box(mask: np.ndarray, size: int) -> tuple[int, int, int, int]:
    """Region (top, bottom, left, right; exclusive ends) in which every ``size``-window shows the damage.

    Per axis, with the damage spanning [a, b): if ``b - a <= size`` every window inside [b - size, a + size)
    holds the whole extent; otherwise windows inside [a, b) stay within it. Clipped to the image, the region
    is at least ``size`` long on each axis when the image is.
    """
    height, width = mask.shape
    if not mask.any():
        return 0, height, 0, width
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))

    def axis(lo: int, hi: int, length: int) -> tuple[int, int]:
        start, end = (hi - size, lo + size) if hi - lo <= size else (lo, hi)
        start, end = max(0, start), min(length, end)
        if end - start < size:  # only when the image itself is shorter than size
            start, end = 0, length
        return start, end

    top, bottom = axis(int(rows[0]), int(rows[-1]) + 1, height)
    left, right = axis(int(cols[0]), int(cols[-1]) + 1, width)
    return top, bottom, left, right


def prepare_pair(
    image: np.ndarray, mask: np.ndarray, size: int, crop_policy: str = "paper", damaged: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Scale (quick runs), upscale and, for damaged images under ``"paper"``, crop around the damage."""
    if crop_policy not in CROP_POLICIES:
        raise ValueError(f"crop policy must be one of {CROP_POLICIES}, not {crop_policy!r}")
    if size < REFERENCE_SIZE:
        factor = size / REFERENCE_SIZE
        height, width = image.shape[:2]
        new_w, new_h = max(1, round(width * factor)), max(1, round(height * factor))
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        mask = _resize_mask(mask, new_w, new_h, cv2.INTER_AREA)
    image, mask = upscale_pair(image, mask, size)
    if crop_policy == "paper" and damaged:
        top, bottom, left, right = damage_window_box(mask, size)
        image, mask = image[top:bottom, left:right], mask[top:bottom, left:right]
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


def load_pairs(samples, size: int, crop_policy: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Read (``core.images.read_image``, ``core.evaluate.read_mask``) and :func:`prepare_pair` each sample."""
    images, masks = [], []
    for sample in samples:
        image, mask = read_image(sample.image), read_mask(sample.mask)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"{sample.mask}: mask size {mask.shape} differs from the image's")
        image, mask = prepare_pair(image, mask, size, crop_policy, damaged=bool(sample.target))
        images.append(image)
        masks.append(mask)
    return images, masks


def crop_mask(mask: np.ndarray, placement: Placement) -> np.ndarray:
    """The part of an image-sized mask that lies under an evaluation crop, on the S×S network grid."""
    if placement.resized_shape != placement.original_shape:
        height, width = placement.resized_shape
        mask = _resize_mask(mask, width, height, cv2.INTER_LINEAR)
    y0, x0 = placement.offset
    size = placement.input_size
    return mask[y0 : y0 + size, x0 : x0 + size]


def eval_set(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    flips: bool = True,
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Centre crops (``prepare_eval``) plus, with ``flips``, their horizontal and vertical mirror images.

    Returns
    -------
    tensors : torch.Tensor
        float32 (K·N, 3, S, S), K = 3 with flips (all originals, then all h-flips, then all v-flips), else 1.
    masks : numpy.ndarray
        bool (K·N, S, S), the crop masks in the same order.
    source : numpy.ndarray
        int (K·N,): index of the source image of each entry.
    """
    tensors, crops = [], []
    for image, mask in zip(images, masks, strict=True):
        tensor, placement = prepare_eval(image, size, mean, std)
        tensors.append(tensor)
        crops.append(crop_mask(mask, placement))
    if not tensors:
        return torch.zeros(0, 3, size, size), np.zeros((0, size, size), bool), np.zeros(0, int)
    x = torch.stack(tensors)
    m = np.stack(crops)
    source = np.arange(len(tensors))
    if flips:
        x = torch.cat([x, torch.flip(x, dims=[3]), torch.flip(x, dims=[2])])
        m = np.concatenate([m, m[:, :, ::-1], m[:, ::-1, :]])
        source = np.tile(source, 3)
    return x, np.ascontiguousarray(m), source


class DeviceImages:
    """Images (and masks) kept on the training device as uint8, cut into random crops there.

    Mirrors :func:`core.preprocess.prepare_train` (uniform random S×S crop, horizontal and vertical flips
    with probability 0.5 each) without leaving the device, so a GPU never waits for the CPU. Images must
    already be at least S on each side (:func:`prepare_pair` makes them so).
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray] | None,
        mean: Sequence[float],
        std: Sequence[float],
        device: torch.device,
    ) -> None:
        self.device = device
        self.images = [self._chw(image).to(device) for image in images]
        self.masks = None if masks is None else [torch.from_numpy(m.astype(np.uint8)).to(device) for m in masks]
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)

    @staticmethod
    def _chw(image: np.ndarray) -> torch.Tensor:
        if image.dtype != np.uint8:
            raise TypeError(f"DeviceImages takes uint8 images, got {image.dtype}")
        array = image[None] if image.ndim == 2 else image.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(array))

    def __len__(self) -> int:
        return len(self.images)

    def normalise(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, S, S) with C 1 or 3 -> normalised float32 (N, 3, S, S), like ``prepare_eval``."""
        x = batch.float() / 255.0
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.mean) / self.std

    def random_crops(
        self, indices: Sequence[int], size: int, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Normalised random crops with random flips, and the matching float masks (N, 1, S, S) or None."""
        crops, mask_crops = [], []
        for i in indices:
            image = self.images[i]
            height, width = image.shape[1:]
            if height < size or width < size:
                raise ValueError(f"image {i} is {height}x{width}, smaller than the crop {size}")
            y0, x0 = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
            flip_h, flip_v = rng.random() < 0.5, rng.random() < 0.5
            dims = [d for d, flip in ((2, flip_h), (1, flip_v)) if flip]
            crop = image[:, y0 : y0 + size, x0 : x0 + size]
            crops.append(torch.flip(crop, dims) if dims else crop)
            if self.masks is not None:
                mask = self.masks[i][None, y0 : y0 + size, x0 : x0 + size]
                mask_crops.append(torch.flip(mask, dims) if dims else mask)
        channels = max(c.shape[0] for c in crops)
        batch = torch.stack([c.expand(channels, -1, -1) for c in crops])
        masks = torch.stack(mask_crops).float() if mask_crops else None
        return self.normalise(batch), masks
