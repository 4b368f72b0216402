"""Training settings a new folder starts with: what trains in minutes on the machine it runs on.

On a GPU that is the paper's configuration (full VGG-11 width, input 224). On a CPU it is the slim width (a
quarter of the channels) and an input size chosen from the images: the input never crops away more than it
must (the evaluation takes the centre input-sized crop of each image, so an input far below the image size
misses damage near the border, as input 128 did on the 224-pixel demo images), and never exceeds the paper's
224, beyond which large images are covered by tiles anyway.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["PAPER_INPUT", "SLIM_WIDTH", "default_train_settings", "input_size_for"]

PAPER_INPUT = 224
SLIM_WIDTH = 0.25
MIN_INPUT = 64


def input_size_for(shapes: Iterable[tuple[int, int]]) -> int:
    """The network input side for images of these ``(height, width)`` shapes.

    The median short side, rounded down to a multiple of 32, between 64 and 224 (224 without shapes).
    """
    short = [min(h, w) for h, w in shapes]
    if not short:
        return PAPER_INPUT
    side = int(np.median(short)) // 32 * 32
    return int(min(PAPER_INPUT, max(MIN_INPUT, side)))


def default_train_settings(shapes: Iterable[tuple[int, int]], device_type: str) -> dict:
    """The ``train_config`` a new project starts with on a ``"cuda"`` or ``"cpu"`` device.

    Parameters
    ----------
    shapes
        ``(height, width)`` of (a sample of) the folder's images.
    device_type
        ``torch.device.type`` of the device that will train.

    Returns
    -------
    dict
        Fields of :class:`core.train.TrainConfig`; the others keep their defaults.
    """
    if device_type == "cuda":
        return {"width": 1.0, "input_size": PAPER_INPUT}
    return {"width": SLIM_WIDTH, "input_size": input_size_for(shapes)}
