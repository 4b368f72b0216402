"""Turn decoded images into network inputs and network-sized maps back into image-sized maps (paper §3.4).

Evaluation (:func:`prepare_eval`): images smaller than the input size S on a side are upscaled (aspect ratio
kept, the short side becomes S), then the centre S×S crop is taken. Training (:func:`prepare_train`): the same
upscaling, then a random S×S crop and random horizontal and vertical flips. The :class:`Placement` of an
evaluation crop maps any S×S score or relevance map back onto the original pixel grid, so masks are always
delivered at the size of the image file.

Images much larger than S can instead be covered by overlapping S×S windows (:func:`tile_grid`,
:func:`tiles`) whose maps :func:`stitch` blends into one image-sized map.

Resizing uses ``cv2.INTER_LINEAR`` everywhere: it never overshoots [0, 1] (cubic does) and is the same in both
directions. Upscaling happens on the float image; images that need no upscaling are cropped before they are
converted to float, so a 50-megapixel image costs one S×S conversion.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

__all__ = [
    "AUGMENTATIONS",
    "Placement",
    "prepare_eval",
    "prepare_train",
    "stitch",
    "tile_grid",
    "tiles",
    "to_float_rgb",
    "upscaled_shape",
]


def to_float_rgb(image: np.ndarray) -> np.ndarray:
    """Convert a uint8/uint16 gray or RGB image to float32 RGB in [0, 1].

    Parameters
    ----------
    image : numpy.ndarray
        (H, W), (H, W, 1) or (H, W, 3); uint8 (divided by 255), uint16 (divided by 65535) or a float type
        already in [0, 1] (kept).

    Returns
    -------
    numpy.ndarray
        float32 (H, W, 3); gray images are replicated into all three channels.
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
    if image.dtype == np.uint8:
        out = image.astype(np.float32) / np.float32(255)
    elif image.dtype == np.uint16:
        out = image.astype(np.float32) / np.float32(65535)
    elif np.issubdtype(image.dtype, np.floating):
        out = image.astype(np.float32, copy=False)
    else:
        raise TypeError(f"unsupported image dtype {image.dtype} (uint8, uint16 or float)")
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    return np.ascontiguousarray(out)


def upscaled_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """Shape after upscaling so the short side is at least ``size`` (unchanged if it already is)."""
    short = min(height, width)
    if short >= size:
        return height, width
    scale = size / short
    return max(size, round(height * scale)), max(size, round(width * scale))


def _normalise(rgb: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    mean_arr = np.asarray(mean, np.float32).reshape(1, 1, 3)
    std_arr = np.asarray(std, np.float32).reshape(1, 1, 3)
    chw = ((rgb - mean_arr) / std_arr).transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(chw, dtype=np.float32))


def _crop_rgb(
    image: np.ndarray, size: int, top_left: tuple[int, int] | None, rng: np.random.Generator | None
) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """Upscale if needed and crop S×S; returns (float RGB crop, resized shape, crop origin)."""
    height, width = image.shape[:2]
    resized = upscaled_shape(height, width, size)
    if resized == (height, width):
        source = image
    else:
        rgb = to_float_rgb(image)
        source = cv2.resize(rgb, (resized[1], resized[0]), interpolation=cv2.INTER_LINEAR)
    if rng is not None:
        y0 = int(rng.integers(0, resized[0] - size + 1))
        x0 = int(rng.integers(0, resized[1] - size + 1))
    elif top_left is None:
        y0, x0 = (resized[0] - size) // 2, (resized[1] - size) // 2
    else:
        y0, x0 = top_left
    crop = to_float_rgb(source[y0 : y0 + size, x0 : x0 + size])
    return crop, resized, (y0, x0)


@dataclass(frozen=True)
class Placement:
    """Where an S×S network input came from in the original image.

    Attributes
    ----------
    original_shape : (int, int)
        (H, W) of the original image.
    resized_shape : (int, int)
        (H', W') after upscaling (equal to ``original_shape`` when no upscaling was needed).
    offset : (int, int)
        (y, x) of the crop's top-left corner in the resized image.
    input_size : int
        S.
    """

    original_shape: tuple[int, int]
    resized_shape: tuple[int, int]
    offset: tuple[int, int]
    input_size: int

    @property
    def scale(self) -> tuple[float, float]:
        """(sy, sx): resized size over original size (>= 1)."""
        (height, width), (resized_h, resized_w) = self.original_shape, self.resized_shape
        return resized_h / height, resized_w / width

    def region(self) -> tuple[float, float, float, float]:
        """The crop in original pixel coordinates: (top, left, bottom, right), edges exclusive."""
        sy, sx = self.scale
        y0, x0 = self.offset
        size = self.input_size
        return y0 / sy, x0 / sx, (y0 + size) / sy, (x0 + size) / sx

    def to_original(self, map_sxs: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Put an S×S map back onto the original image grid.

        The map is pasted at the crop position of a ``fill``-valued canvas of the resized shape, which is
        then shrunk to the original shape by area averaging (``cv2.INTER_AREA``: every pixel of the map counts,
        so thin structures survive any factor; ``INTER_NEAREST`` for boolean masks).

        Parameters
        ----------
        map_sxs : numpy.ndarray
            (S, S) score, relevance or boolean map.
        fill : float
            Value outside the crop.

        Returns
        -------
        numpy.ndarray
            (H, W): float32, or bool for a boolean input.
        """
        size = self.input_size
        if map_sxs.shape != (size, size):
            raise ValueError(f"expected a ({size}, {size}) map, got {map_sxs.shape}")
        is_mask = map_sxs.dtype == np.bool_
        canvas = np.full(self.resized_shape, fill, dtype=np.float32)
        y0, x0 = self.offset
        canvas[y0 : y0 + size, x0 : x0 + size] = map_sxs
        if self.resized_shape != self.original_shape:
            height, width = self.original_shape
            method = cv2.INTER_NEAREST if is_mask else cv2.INTER_AREA
            canvas = cv2.resize(canvas, (width, height), interpolation=method)
        return canvas >= 0.5 if is_mask else canvas


def prepare_eval(
    image: np.ndarray, input_size: int, mean: Sequence[float], std: Sequence[float]
) -> tuple[torch.Tensor, Placement]:
    """Evaluation input: upscale images below ``input_size`` on a side, then take the centre crop.

    Parameters
    ----------
    image : numpy.ndarray
        (H, W) or (H, W, 3), uint8 or uint16 (see :func:`to_float_rgb`).
    input_size : int
        S, the network's input side.
    mean, std : sequence of 3 floats
        Per-channel normalisation applied to RGB in [0, 1].

    Returns
    -------
    tensor : torch.Tensor
        float32 (3, S, S), normalised.
    placement : Placement
        Maps S×S results back onto the original grid.
    """
    crop, resized, offset = _crop_rgb(image, input_size, None, None)
    placement = Placement(tuple(image.shape[:2]), resized, offset, input_size)
    return _normalise(crop, mean, std), placement


AUGMENTATIONS = ("paper", "dihedral")
"""``paper``: random S×S crop and random horizontal and vertical flips (paper §3.4). ``dihedral`` adds a random
transposition (so all eight rotations and reflections of the square occur) and, where the upscaled image leaves
less than S/8 of room to crop in, a random shift of up to S/16 in each direction (mirrored at the border)."""


def prepare_train(
    image: np.ndarray,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    rng: np.random.Generator,
    augment: str = "paper",
) -> torch.Tensor:
    """Training input: upscale if needed, random S×S crop, random flips (:data:`AUGMENTATIONS`).

    Parameters
    ----------
    image, input_size, mean, std
        As for :func:`prepare_eval`.
    rng : numpy.random.Generator
        Draws the crop origin, the flips (each with probability 0.5) and, for ``"dihedral"``, the
        transposition and the shift.
    augment : {"paper", "dihedral"}
        Which augmentation (:data:`AUGMENTATIONS`).

    Returns
    -------
    torch.Tensor
        float32 (3, S, S), normalised.
    """
    if augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {augment!r}; choose one of {AUGMENTATIONS}")
    if augment == "dihedral":
        image = _with_room_to_shift(image, input_size)
    crop, _, _ = _crop_rgb(image, input_size, None, rng)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if rng.random() < 0.5:
        crop = crop[::-1, :]
    if augment == "dihedral" and rng.random() < 0.5:
        crop = crop.transpose(1, 0, 2)
    return _normalise(crop, mean, std)


def _with_room_to_shift(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` upscaled to cover S×S and mirror-padded by S/16 on each side where it has less than S/8 room."""
    height, width = upscaled_shape(*image.shape[:2], size)
    margin = size // 16
    pad_y = margin if height - size < 2 * margin else 0
    pad_x = margin if width - size < 2 * margin else 0
    if not (pad_y or pad_x):
        return image
    if (height, width) != image.shape[:2]:
        image = cv2.resize(to_float_rgb(image), (width, height), interpolation=cv2.INTER_LINEAR)
    return cv2.copyMakeBorder(image, pad_y, pad_y, pad_x, pad_x, cv2.BORDER_REFLECT_101)


# ---------------------------------------------------------------------------------------------- tiling
def _axis_origins(length: int, size: int, overlap: float) -> list[int]:
    if length <= size:
        return [0]
    stride = max(1, int(size * (1.0 - overlap)))
    count = math.ceil((length - size) / stride) + 1
    return sorted({round(i * (length - size) / (count - 1)) for i in range(count)})


def tile_grid(height: int, width: int, input_size: int, overlap: float = 0.25) -> list[tuple[int, int]]:
    """Origins (y, x) of S×S windows that cover an H×W image with at least ``overlap`` between neighbours.

    Windows are spread evenly so the last one ends at the image border. A side shorter than S gets a single
    window at 0 (:func:`tiles` pads the image for it).

    Parameters
    ----------
    height, width : int
        Image size.
    input_size : int
        S.
    overlap : float
        Minimum overlap of neighbouring windows as a fraction of S, in [0, 1).

    Returns
    -------
    list of (int, int)
        Row-major window origins.
    """
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    ys = _axis_origins(height, input_size, overlap)
    xs = _axis_origins(width, input_size, overlap)
    return [(y, x) for y in ys for x in xs]


def tiles(
    image: np.ndarray, input_size: int, mean: Sequence[float], std: Sequence[float], overlap: float = 0.25
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Cut an image into overlapping normalised S×S windows (no resizing).

    Sides shorter than S are padded by mirroring (``cv2.BORDER_REFLECT_101``); :func:`stitch` crops the
    padding off again.

    Returns
    -------
    batch : torch.Tensor
        float32 (N, 3, S, S).
    origins : list of (int, int)
        The window origins, as :func:`tile_grid` gives them; pass them to :func:`stitch`.
    """
    height, width = image.shape[:2]
    origins = tile_grid(height, width, input_size, overlap)
    rgb = to_float_rgb(image)
    pad_y, pad_x = max(0, input_size - height), max(0, input_size - width)
    if pad_y or pad_x:
        rgb = cv2.copyMakeBorder(rgb, 0, pad_y, 0, pad_x, cv2.BORDER_REFLECT_101)
    windows = [_normalise(rgb[y : y + input_size, x : x + input_size], mean, std) for y, x in origins]
    return torch.stack(windows), origins


def _window_weight(size: int, window: str) -> np.ndarray:
    if window == "mean":
        return np.ones((size, size), np.float32)
    if window == "hann":
        # Never exactly zero, so pixels at the image border covered by one window keep a weight.
        ramp = np.sin(np.pi * (np.arange(size) + 0.5) / size) ** 2
        ramp = np.maximum(ramp, 1e-3).astype(np.float32)
        return np.outer(ramp, ramp)
    raise ValueError(f"unknown window {window!r} (expected 'hann' or 'mean')")


def stitch(
    maps: np.ndarray | Sequence[np.ndarray],
    origins: Sequence[tuple[int, int]],
    shape: tuple[int, int],
    input_size: int,
    window: str = "hann",
) -> np.ndarray:
    """Blend S×S window maps into one (H, W) map by a weighted average where windows overlap.

    Parameters
    ----------
    maps : array (N, S, S) or sequence of (S, S) arrays
        One map per window.
    origins : sequence of (int, int)
        Window origins (y, x) from :func:`tile_grid` / :func:`tiles`.
    shape : (int, int)
        (H, W) of the image.
    input_size : int
        S.
    window : {"hann", "mean"}
        "hann" weights each window by a smooth bump (seams fade out), "mean" is the plain average.

    Returns
    -------
    numpy.ndarray
        float32 (H, W). Pixels covered by no window are 0.
    """
    if len(maps) != len(origins):
        raise ValueError(f"{len(maps)} maps but {len(origins)} origins")
    height, width = shape
    size = input_size
    weight = _window_weight(size, window)
    total = np.zeros((max(height, size), max(width, size)), np.float64)
    weights = np.zeros_like(total)
    for tile_map, (y, x) in zip(maps, origins, strict=True):
        tile_map = np.asarray(tile_map, np.float64)
        if tile_map.shape != (size, size):
            raise ValueError(f"expected ({size}, {size}) maps, got {tile_map.shape}")
        total[y : y + size, x : x + size] += tile_map * weight
        weights[y : y + size, x : x + size] += weight
    out = np.divide(total, weights, out=np.zeros_like(total), where=weights > 0)
    return out[:height, :width].astype(np.float32)
