"""Draw the lrpseg icon (a tile with a crack and its relevance glow) as resources/icons/lrpseg.png.

Run once after changing the design: ``python resources/make_icon.py``. The PNG is committed.
"""

from pathlib import Path

import cv2
import numpy as np

SIZE = 256


def draw_icon(size: int = SIZE) -> np.ndarray:
    """The icon as a BGRA uint8 image."""
    icon = np.zeros((size, size, 4), np.uint8)
    tile = np.full((size, size, 3), (58, 52, 48), np.uint8)
    cv2.rectangle(tile, (0, 0), (size - 1, size - 1), (90, 84, 78), thickness=size // 32)
    crack = np.array([[0.22, 0.18], [0.38, 0.36], [0.33, 0.52], [0.55, 0.63], [0.62, 0.84]]) * size
    heat = np.zeros((size, size), np.float32)
    cv2.polylines(heat, [crack.astype(np.int32)], False, 1.0, thickness=size // 10)
    heat = cv2.GaussianBlur(heat, (0, 0), size / 25)
    heat /= heat.max()
    glow = np.dstack([heat * 40, heat * 80, heat * 230]).astype(np.float32)
    tile = np.clip(tile.astype(np.float32) * (1 - 0.6 * heat[..., None]) + glow, 0, 255).astype(np.uint8)
    cv2.polylines(tile, [crack.astype(np.int32)], False, (20, 20, 20), thickness=max(2, size // 40))
    radius = size // 8
    mask = np.zeros((size, size), np.uint8)
    cv2.rectangle(mask, (radius, 0), (size - radius, size), 255, -1)
    cv2.rectangle(mask, (0, radius), (size, size - radius), 255, -1)
    for cx in (radius, size - radius):
        for cy in (radius, size - radius):
            cv2.circle(mask, (cx, cy), radius, 255, -1)
    icon[..., :3] = tile
    icon[..., 3] = mask
    return icon


if __name__ == "__main__":
    out = Path(__file__).with_name("icons") / "lrpseg.png"
    cv2.imwrite(str(out), draw_icon())
    print(f"wrote {out}")
