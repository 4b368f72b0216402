"""Explain a batch of images: LRP relevance maps for one class, per pixel (summed over colour channels)."""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from lrpseg.core.lrp.composites import check_maxpool
from lrpseg.core.lrp.registry import RULE_SETS, RuleSet
from torch import nn

__all__ = ["Explanation", "explain", "relevance_tensor"]


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
    """

    relevance: np.ndarray
    logits: np.ndarray
    rule_set: str
    maxpool: str
    target: int


@contextmanager
def _eval_mode(model: nn.Module):
    """Dropout off while explaining; the caller's training flag comes back afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def relevance_tensor(
    model: nn.Module, images: torch.Tensor, target: int, rule_set: RuleSet, maxpool: str = "wta"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Input relevance ``(N, 3, S, S)`` and logits, computed with ``model`` as it is (dtype, device, mode).

    The relevance starts at the logit of ``target`` (all other outputs zero). Hooks are registered for the
    duration of the call only, also when it raises.
    """
    composite = rule_set(model, maxpool)
    x = images.detach().requires_grad_(True)
    with torch.enable_grad(), composite.context(model):
        logits = model(x)
        start = torch.zeros_like(logits)
        start[:, target] = logits[:, target].detach()
        (relevance,) = torch.autograd.grad(logits, x, grad_outputs=start)
    return relevance, logits.detach()


def explain(
    model: nn.Module,
    images: torch.Tensor,
    target: int = 1,
    rule_set: str = "ours",
    maxpool: str = "wta",
    dtype: torch.dtype = torch.float32,
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
        Class of interest (1 = damaged); its logit is the starting relevance, other outputs start at zero.
    rule_set : str
        A key of :data:`core.lrp.RULE_SETS` ("ours", "montavon", zennit's stock composites...).
    maxpool : {"wta", "avg"}
        Max-pool relevance: winner-take-all or spread like an average pool (Montavon's tutorial).
    dtype : torch.dtype
        Computation dtype; a model of another dtype is explained through a cast copy.

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
    param = next(model.parameters())
    if param.dtype != dtype:
        model = copy.deepcopy(model).to(dtype)
    if images.is_inference():
        images = images.clone()  # inference-mode tensors cannot enter autograd
    images = images.to(device=param.device, dtype=dtype)
    with _eval_mode(model):
        relevance, logits = relevance_tensor(model, images, target, RULE_SETS[rule_set], maxpool)
    return Explanation(
        relevance=relevance.sum(dim=1).cpu().numpy(),
        logits=logits.cpu().numpy(),
        rule_set=rule_set,
        maxpool=maxpool,
        target=target,
    )
