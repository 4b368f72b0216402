"""Explain a batch of images: LRP relevance maps for one class, per pixel (summed over colour channels)."""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from lrpseg.core.lrp.composites import check_maxpool
from lrpseg.core.lrp.registry import DEFAULT_RULE_SET, RULE_SETS, RuleSet
from torch import nn

__all__ = ["DEFAULT_VIEWS", "STARTS", "VIEWS", "Explanation", "explain", "relevance_tensor"]

# Where relevance starts. "logodds": the decision z_target − z_other (two classes), i.e. the final layer
# explained as W_target − W_other, so a map never flips sign when both logits shift together. "logit": the
# paper's start, the raw logit of the target class; a negative logit inverts the whole map.
STARTS = ("logodds", "logit")

# How many views of each input are explained and averaged. 1: the paper's single pass. 2: also the input turned by
# 180° (both flips, which the paper's training augmentation and ours include), its map turned back. LRP through
# max-pool winners, padding and strided layers leaves artefacts tied to the input's orientation; the turned view
# carries them mirrored and the average cancels them. Measured in benchmarks/RESULTS.md ("Two views"): +0.009 to
# +0.043 IoU on four demo models (a fifth unchanged) and +0.053 to +0.065 on Magnetic Tile, for twice the LRP work.
VIEWS = (1, 2)
DEFAULT_VIEWS = 2


@dataclass
class Explanation:
    """Result of :func:`explain` for a batch of ``N`` images of side ``S``.

    Attributes
    ----------
    relevance : np.ndarray
        ``(N, S, S)`` signed relevance per pixel (sum over the input channels), in the computation dtype.
    logits : np.ndarray
        ``(N, C)`` model outputs.
    rule_set : str
        Registry name of the rule set used.
    maxpool : str
        Max-pool relevance: "wta" (winner-take-all) or "avg" (spread like an average pool).
    target : int
        Class whose logit the relevance started from.
    start : str
        "logodds" (the decision) or "logit" (the paper's raw logit), see :data:`STARTS`.
    views : int
        How many views of each image were explained and averaged, see :data:`VIEWS`.
    """

    relevance: np.ndarray
    logits: np.ndarray
    rule_set: str
    maxpool: str
    target: int
    start: str = "logodds"
    views: int = 1


@contextmanager
def _eval_mode(model: nn.Module):
    """Dropout off while explaining; the caller's training flag comes back afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def start_relevance(logits: torch.Tensor, target: int, start: str = "logodds") -> torch.Tensor:
    """The output relevance LRP starts from.

    ``"logit"``: the logit of ``target``, all other outputs zero. ``"logodds"``: the log-odds of ``target``
    against the other class, ``z_t − z_o``, written per output as ``(z_t, −z_o)``; every LRP rule of the last
    layer divides its output relevance by that output, so this explains the layer ``W_t − W_o``.
    """
    if start not in STARTS:
        raise ValueError(f"unknown relevance start {start!r}; choose from {', '.join(STARTS)}")
    logits = logits.detach()
    out = torch.zeros_like(logits)
    out[:, target] = logits[:, target]
    if start == "logodds":
        if logits.shape[1] != 2:
            raise ValueError(f"the log-odds start needs two classes, the model has {logits.shape[1]}")
        out[:, 1 - target] = -logits[:, 1 - target]
    return out


def relevance_tensor(
    model: nn.Module,
    images: torch.Tensor,
    target: int,
    rule_set: RuleSet,
    maxpool: str = "wta",
    start: str = "logodds",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Input relevance ``(N, 3, S, S)`` and logits, computed with ``model`` as it is (dtype, device, mode).

    The relevance starts as :func:`start_relevance` says. Hooks are registered for the duration of the call
    only, also when it raises.
    """
    composite = rule_set(model, maxpool)
    x = images.detach().requires_grad_(True)
    with torch.enable_grad(), composite.context(model):
        logits = model(x)
        (relevance,) = torch.autograd.grad(logits, x, grad_outputs=start_relevance(logits, target, start))
    return relevance, logits.detach()


def explain(
    model: nn.Module,
    images: torch.Tensor,
    target: int = 1,
    rule_set: str = DEFAULT_RULE_SET,
    maxpool: str = "wta",
    dtype: torch.dtype = torch.float32,
    start: str = "logodds",
    views: int = DEFAULT_VIEWS,
) -> Explanation:
    """LRP relevance maps of ``images`` for class ``target``.

    Parameters
    ----------
    model : VGGA
        The classifier, on any device. It is left as it was: dtype, training flag, no hooks (also on errors).
        Dropout is off while explaining.
    images : torch.Tensor
        Normalised ``(N, 3, S, S)`` batch; moved to the model's device.
    target : int
        Class of interest (1 = damaged).
    rule_set : str
        A key of :data:`core.lrp.RULE_SETS` (default :data:`core.lrp.DEFAULT_RULE_SET`; "ours", "montavon",
        zennit's stock composites...).
    maxpool : {"wta", "avg"}
        Max-pool relevance: winner-take-all or spread like an average pool (Montavon's tutorial).
    dtype : torch.dtype
        Computation dtype; a model of another dtype is explained through a cast copy.
    start : {"logodds", "logit"}
        Starting relevance (:func:`start_relevance`): the decision's log-odds (default) or the paper's raw
        logit of ``target``.
    views : {1, 2}
        1: the paper's single LRP pass. 2 (default): the mean of the maps of each image and of the image turned
        by 180° (its map turned back), see :data:`VIEWS`. Each view's map is exact LRP of the model; the logits
        are always those of the images as given.

    Returns
    -------
    Explanation
    """
    if rule_set not in RULE_SETS:
        raise ValueError(f"unknown rule set {rule_set!r}; choose from {', '.join(RULE_SETS)}")
    check_maxpool(maxpool)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be a (N, 3, S, S) tensor, got shape {tuple(images.shape)}")
    num_classes = getattr(model, "num_classes", None)
    if not isinstance(target, int) or target < 0 or (num_classes is not None and target >= num_classes):
        raise ValueError(f"target must be a class index below {num_classes}, not {target!r}")
    if views not in VIEWS:
        raise ValueError(f"views must be one of {VIEWS}, not {views!r}")
    param = next(model.parameters())
    if param.dtype != dtype:
        model = copy.deepcopy(model).to(dtype)
    if images.is_inference():
        images = images.clone()  # inference-mode tensors cannot enter autograd
    images = images.to(device=param.device, dtype=dtype)
    rules = RULE_SETS[rule_set]
    with _eval_mode(model):
        relevance, logits = relevance_tensor(model, images, target, rules, maxpool, start)
        relevance = relevance.sum(dim=1)
        if views == 2:  # a pass of its own: the same batch size, so the same kernels, as the first view
            turned, _ = relevance_tensor(model, images.flip(-2, -1), target, rules, maxpool, start)
            relevance = (relevance + turned.sum(dim=1).flip(-2, -1)) / 2
    return Explanation(
        relevance=relevance.cpu().numpy(),
        logits=logits.cpu().numpy(),
        rule_set=rule_set,
        maxpool=maxpool,
        target=target,
        start=start,
        views=views,
    )
