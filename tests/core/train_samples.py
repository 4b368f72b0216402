"""Tiny labelled samples and settings shared by the training tests."""

import numpy as np
from lrpseg.core.demo import make_sample

TINY = dict(head="onefc", width=0.125, input_size=32, epochs=2, batch_size=4, device="cpu")


def labelled_samples(n, size=40, seed=0):
    """``n`` demo images, alternately undamaged and damaged, with their 0/1 targets."""
    rng = np.random.default_rng(seed)
    images, targets = [], []
    for i in range(n):
        damaged = i % 2 == 1
        images.append(make_sample(rng, size, damaged)[0])
        targets.append(int(damaged))
    return images, np.array(targets)
