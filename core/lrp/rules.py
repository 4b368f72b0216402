"""Fast LRP rules as zennit hooks, plus the average-pool redistribution rule for max-pool layers.

zennit's stock rules recompute each layer several times in the backward pass (ZBox 3 forward passes, AlphaBeta
4, Gamma 5, Epsilon 1), each followed by an autograd backward through it, after autograd has also computed the
layer's plain input gradient, which is then thrown away. The rules here compute the same relevance with
less work, using what VGG-A guarantees:

- the input of every layer after ``conv1_1`` comes out of a ReLU (or a max-pool or dropout of one), so it is
  non-negative and the passes on its negative part (zero) can be skipped;
- every conv is followed by a ReLU, so the relevance arriving at a conv output is exactly zero where the
  pre-activation ``z <= 0``; the γ rule's branch for negative ``z`` then contributes nothing;
- the layer's own output ``z`` is kept from the forward pass instead of being recomputed;
- input gradients are computed directly (``conv2d_input``); α-β derives its negative part from ``z`` and
  runs its two backward parts as one convolution over concatenated weights.

Each fast rule gives the stock rule's relevance up to rounding (tests compare them in float64). They are only
valid where those conditions hold; :mod:`core.lrp.composites` checks them before using a fast rule.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from zennit.core import BasicHook, Hook, ParamMod, RemovableHandle, RemovableHandleList, Stabilizer

__all__ = [
    "STABILIZER",
    "FastRule",
    "FastEpsilon",
    "FastGamma",
    "FastAlphaBeta",
    "FastZPlus",
    "FastZBox",
    "FastAvgPool",
    "AvgPoolNorm",
]

STABILIZER = 1e-6  # zennit's default denominator stabiliser, used wherever no ε is given

# Tensors derived from a layer's parameters (clamped, scaled, concatenated weights), kept between calls and
# rebuilt when a parameter changes (optimizer step, load_state_dict, .to()).
_DERIVED: weakref.WeakKeyDictionary[nn.Module, dict] = weakref.WeakKeyDictionary()


def _derived(module: nn.Module, key: tuple, build: Callable[[nn.Module], object]):
    """``build(module)``, cached per module and ``key`` while the module's parameters stay the same.

    Same means: the same parameter objects (weak references), unchanged in place (``_version``), with the
    same storage, dtype and device.
    """
    params = [param for param in (module.weight, module.bias) if param is not None]
    stamp = tuple((param._version, param.data_ptr(), param.dtype, param.device) for param in params)
    entries = _DERIVED.setdefault(module, {})
    entry = entries.get(key)
    stale = entry is None or entry[1] != stamp
    if stale or any(ref() is not param for ref, param in zip(entry[0], params, strict=True)):
        with torch.no_grad():
            entry = entries[key] = ([weakref.ref(param) for param in params], stamp, build(module))
    return entry[2]


def _stabilize(t: torch.Tensor, epsilon: float = STABILIZER) -> torch.Tensor:
    """zennit's ``stabilize``: ``t + epsilon * sign(t)`` with sign(0) = +1 (in place on a fresh ``t``)."""
    step = torch.tensor(epsilon, dtype=t.dtype, device=t.device)
    return t.add_(torch.where(t >= 0, step, -step))


def _layer_forward(module: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
    if isinstance(module, nn.Conv2d):
        return F.conv2d(x, weight, bias, module.stride, module.padding, module.dilation, module.groups)
    return F.linear(x, weight, bias)


def _input_gradient(module: nn.Module, input_shape, weight: torch.Tensor, grad: torch.Tensor):
    """Gradient of ``layer(x, weight)`` w.r.t. ``x`` for output gradient ``grad``, without autograd.

    For convolutions this is the transposed convolution (measured no slower than ``conv2d_input`` here).
    """
    if not isinstance(module, nn.Conv2d):
        return grad @ weight
    if isinstance(module.padding, str):
        raise NotImplementedError("fast LRP rules need a numeric conv padding, not 'same'/'valid'")
    sizes = zip(input_shape[2:], grad.shape[2:], weight.shape[2:], strict=True)
    geometry = zip(sizes, module.stride, module.padding, module.dilation, strict=True)
    # the sizes a stride cut off in the forward pass come back as output padding
    output_padding = tuple(n - ((m - 1) * s - 2 * p + d * (k - 1) + 1) for (n, m, k), s, p, d in geometry)
    return F.conv_transpose2d(
        grad, weight, None, module.stride, module.padding, output_padding, module.groups, module.dilation
    )


class _RelevanceFunction(torch.autograd.Function):
    """Passes the layer output through unchanged; its backward asks the rule for the input relevance."""

    @staticmethod
    def forward(ctx, x, z, rule, module):
        ctx.rule = rule
        ctx.module = module
        ctx.save_for_backward(x, z)
        return z

    @staticmethod
    def backward(ctx, relevance):
        x, z = ctx.saved_tensors
        return ctx.rule.relevance(ctx.module, x, z, relevance), None, None, None


class FastRule(Hook):
    """Base of the fast rules: a zennit hook that replaces the layer's backward by :meth:`relevance`.

    Registered through a zennit composite like any rule. A forward hook routes the layer output through an
    autograd function whose backward returns ``relevance(module, x, z, R)``; the layer's own autograd node is
    cut off, so its plain gradient is never computed.
    """

    label = "fast"

    def register(self, module: nn.Module) -> RemovableHandleList:
        """Attach to ``module``; the returned handles detach it again."""
        return RemovableHandleList([RemovableHandle(self), module.register_forward_hook(self._forward_hook)])

    def _forward_hook(self, module, inputs, output):
        x = inputs[0]
        if not (torch.is_grad_enabled() and x.requires_grad):
            return None
        return _RelevanceFunction.apply(x, output.detach(), self, module)

    def relevance(self, module: nn.Module, x: torch.Tensor, z: torch.Tensor, relevance: torch.Tensor):
        """Relevance of the layer input ``x`` given the layer output ``z`` and its relevance."""
        raise NotImplementedError

    def copy(self):
        """A new, unregistered hook with the same parameters (zennit composites register copies)."""
        clone = self.__class__.__new__(self.__class__)
        Hook.__init__(clone)
        clone.__dict__.update({k: v for k, v in self.__dict__.items() if k not in clone.__dict__})
        return clone


class FastEpsilon(FastRule):
    """LRP-ε (stock :class:`zennit.rules.Epsilon`) reusing the forward output: one input-gradient pass.

    Parameters
    ----------
    epsilon : float or callable
        As zennit's: a float is added with the sign of ``z``; a callable (e.g.
        ``Stabilizer(0.25, norm_scale=True)``) maps ``z`` to the stabilised denominator.
    label : str
        Name of the rule for reports ("epsilon", "lrp0").
    """

    def __init__(self, epsilon=STABILIZER, label="epsilon"):
        super().__init__()
        self.stabilizer = Stabilizer.ensure(epsilon)
        self.label = label

    def relevance(self, module, x, z, relevance):
        grad = relevance / self.stabilizer(z)
        return _input_gradient(module, x.shape, module.weight, grad).mul_(x)


class FastGamma(FastRule):
    """LRP-γ (stock :class:`zennit.rules.Gamma`) for a non-negative input and a layer followed by a ReLU.

    With ``x >= 0`` and zero relevance where ``z <= 0`` the stock rule reduces to
    ``R_in = x * (W + γW⁺)ᵀ [R / stab((W + γW⁺) x + b + γb⁺)]``: one modified forward, one input gradient.
    Where the relevance is non-zero the denominator is positive (it is at least ``z``), so stabilising is
    ``+ stabilizer``; elsewhere the denominator is clamped to stay positive and its quotient is zero.
    """

    label = "gamma"

    def __init__(self, gamma=0.25, stabilizer=STABILIZER):
        super().__init__()
        self.gamma = gamma
        self.stabilizer = stabilizer

    def _weights(self, module):
        def plus_gamma(param):
            return None if param is None else param + self.gamma * param.clamp(min=0)

        return plus_gamma(module.weight), plus_gamma(module.bias)

    def relevance(self, module, x, z, relevance):
        weight, bias = _derived(module, ("gamma", self.gamma), self._weights)
        out = _layer_forward(module, x, weight, bias).clamp_(min=0).add_(self.stabilizer)
        grad = torch.div(relevance, out, out=out)
        return _input_gradient(module, x.shape, weight, grad).mul_(x)


class FastAlphaBeta(FastRule):
    """LRP-αβ (stock :class:`zennit.rules.AlphaBeta`) for a non-negative input.

    With ``x >= 0``: ``R_in = x * [α W⁺ᵀ (R / stab(p)) - β W⁻ᵀ (R / stab(n))]`` with ``p = W⁺x + b⁺ >= 0`` and
    ``n = W⁻x + b⁻ <= 0``. One modified forward gives ``p``; ``n = z - p`` follows from the layer output ``z``
    (``W = W⁺ + W⁻``, ``b = b⁺ + b⁻``), and both parts run as one input gradient over weights concatenated
    along the output channels. ``n`` is zero only where all its terms are, so its sign for the stabiliser does
    not change the result. In float32 the subtraction adds rounding of about 1e-7·|z| to ``n``; clamping
    ``n <= 0`` and the stabiliser keep that bounded (the tests compare with the stock rule in float64 and
    float32).
    """

    label = "alpha_beta"

    def __init__(self, alpha=2.0, beta=1.0, stabilizer=STABILIZER):
        super().__init__()
        if alpha < 0 or beta < 0 or alpha - beta != 1:
            raise ValueError(f"need alpha, beta >= 0 and alpha - beta = 1, got {alpha}, {beta}")
        self.alpha = alpha
        self.beta = beta
        self.stabilizer = stabilizer
        self.label = f"alpha{alpha:g}_beta{beta:g}"

    def _weights(self, module):
        w, b = module.weight, module.bias
        signed = torch.cat([self.alpha * w.clamp(min=0), -self.beta * w.clamp(max=0)])
        return w.clamp(min=0), None if b is None else b.clamp(min=0), signed

    def relevance(self, module, x, z, relevance):
        weight, bias, signed = _derived(module, ("alpha_beta", self.alpha, self.beta), self._weights)
        positive = _layer_forward(module, x, weight, bias)
        parts = positive.new_empty((positive.shape[0], 2, *positive.shape[1:]))
        torch.add(positive, self.stabilizer, out=parts[:, 0])
        torch.sub(z, positive, out=parts[:, 1])
        parts[:, 1].clamp_(max=0).sub_(self.stabilizer)
        grad = torch.div(relevance.unsqueeze(1), parts, out=parts).flatten(1, 2)
        return _input_gradient(module, x.shape, signed, grad).mul_(x)


class FastZPlus(FastRule):
    """LRP-z⁺ (stock :class:`zennit.rules.ZPlus`, α1β0) for a non-negative input.

    With ``x >= 0`` the stock rule's pass over negative inputs is zero, leaving
    ``R_in = x * W⁺ᵀ [R / (W⁺x + b⁺ + stabilizer)]``: one modified forward, one input gradient. The
    denominator is never negative, so stabilising is ``+ stabilizer`` as zennit's sign(0) = +1 has it.
    """

    label = "zplus"

    def __init__(self, stabilizer=STABILIZER):
        super().__init__()
        self.stabilizer = stabilizer

    @staticmethod
    def _weights(module):
        bias = None if module.bias is None else module.bias.clamp(min=0)
        return module.weight.clamp(min=0), bias

    def relevance(self, module, x, z, relevance):
        weight, bias = _derived(module, ("zplus",), self._weights)
        out = _layer_forward(module, x, weight, bias).add_(self.stabilizer)
        grad = torch.div(relevance, out, out=out)
        return _input_gradient(module, x.shape, weight, grad).mul_(x)


class FastZBox(FastRule):
    """LRP-z^B (stock :class:`zennit.rules.ZBox`) for a conv layer on a bounded input ``low <= x <= high``.

    ``R_in = (x - l) * W⁺ᵀ g + (x - h) * W⁻ᵀ g`` with ``g = R / stab(z - (b + W⁺ l + W⁻ h))``; the offset
    ``b + W⁺ l + W⁻ h`` does not depend on the image and is kept between calls.

    Parameters
    ----------
    low, high : torch.Tensor
        Per-channel bounds, shape ``(1, C, 1, 1)`` (broadcast to the input).
    stabilizer : float
        Added to denominators with their sign, as zennit's ``stabilizer`` argument.
    """

    label = "zbox"

    def __init__(self, low: torch.Tensor, high: torch.Tensor, stabilizer=STABILIZER):
        super().__init__()
        self.low = low
        self.high = high
        self.stabilizer = stabilizer

    def relevance(self, module, x, z, relevance):
        if not isinstance(module, nn.Conv2d):
            raise TypeError("FastZBox supports Conv2d layers only")
        low, high = self.low.to(x), self.high.to(x)

        def build(module):
            w = module.weight
            weight = torch.cat([w.clamp(min=0), w.clamp(max=0)], dim=1)  # input channels: [low | high]
            bounds = torch.cat([low.expand(1, *x.shape[1:]), high.expand(1, *x.shape[1:])], dim=1)
            offset = _layer_forward(module, bounds, weight, module.bias)
            return weight, offset

        key = ("zbox", tuple(low.flatten().tolist()), tuple(high.flatten().tolist()), tuple(x.shape[1:]))
        weight, offset = _derived(module, key, build)
        grad = relevance / _stabilize(z - offset, self.stabilizer)
        parts = _input_gradient(module, (x.shape[0], 2 * x.shape[1], *x.shape[2:]), weight, grad)
        positive, negative = parts.split(x.shape[1], dim=1)
        return positive.mul_(x - low).add_(negative.mul_(x - high))


def _pool_args(module: nn.MaxPool2d) -> dict:
    if module.dilation not in (1, (1, 1)):
        raise ValueError("average-pool redistribution needs a max-pool without dilation")
    return {
        "kernel_size": module.kernel_size,
        "stride": module.stride,
        "padding": module.padding,
        "ceil_mode": module.ceil_mode,
    }


class FastAvgPool(FastRule):
    """Max-pool relevance spread like an average pool (Montavon's tutorial), computed directly.

    ``R_in = x * AvgPoolᵀ [R / stab(AvgPool(x))]`` with zennit's 1e-6 stabiliser (zennit's Norm rule).
    """

    label = "avgpool"

    def __init__(self, stabilizer=STABILIZER):
        super().__init__()
        self.stabilizer = stabilizer

    def relevance(self, module, x, z, relevance):
        args = _pool_args(module)
        grad = relevance / _stabilize(F.avg_pool2d(x, **args), self.stabilizer)
        return torch.ops.aten.avg_pool2d_backward(
            grad, x, args["kernel_size"], args["stride"], args["padding"], args["ceil_mode"], True, None
        ).mul_(x)


class _AsAvgPool(ParamMod):
    """zennit parameter modifier presenting a max-pool to the rule as the average pool of the same window."""

    def __init__(self):
        super().__init__(lambda param, name: param, param_keys=[])

    @contextmanager
    def __call__(self, module):
        yield nn.AvgPool2d(**_pool_args(module))


class AvgPoolNorm(BasicHook):
    """Reference average-pool redistribution from zennit parts: the Norm rule evaluated on ``AvgPool2d``.

    Attach to ``MaxPool2d`` layers; the forward pass still max-pools.
    """

    def __init__(self, stabilizer=STABILIZER):
        stabilizer_fn = Stabilizer.ensure(stabilizer)
        super().__init__(
            input_modifiers=[lambda input: input],
            param_modifiers=[_AsAvgPool()],
            output_modifiers=[lambda output: output],
            gradient_mapper=(lambda out_grad, outputs: out_grad / stabilizer_fn(outputs[0])),
            reducer=(lambda inputs, gradients: inputs[0] * gradients[0]),
        )
