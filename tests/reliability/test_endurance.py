"""A short endurance run in the unit suite: ``lrpseg segment`` over 150 generated images keeps its memory flat.

The full run (2,000 images, a few minutes) is ``python tests/reliability/endurance.py``; its figures are in
tests/RELIABILITY.md.
"""

from __future__ import annotations

import sys

import pytest
from endurance import run

IMAGES = 150
#: Allowed RSS growth from the 10th image to the end of the batch. A leak of 70 kB per image (one small
#: relevance map and score map kept per image) would exceed it; the measured growth is 1-2 MiB.
MAX_GROWTH_MB = 10.0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/status")
def test_segment_150_images_with_flat_memory(tmp_path):
    result = run(IMAGES, tmp_path)
    assert result["summary"] == {"images": IMAGES, "masks_written": IMAGES, "errors": 0, "kept_existing": 0,
                                 "corrected_masks": 0}
    rss = result["rss_mb"]
    print(f"RSS MiB over {IMAGES} images: {rss}; {result['segment_s']} s")
    assert result["samples"] >= 20  # the memory was really sampled along the way
    assert result["growth_mb_tenth_to_end"] < MAX_GROWTH_MB, rss
    assert rss["peak"] - rss["tenth_image"] < MAX_GROWTH_MB, rss
