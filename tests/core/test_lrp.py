"""LRP engine: fast rules equal zennit's stock rules, Table 1 mapping, conservation, explain() contract."""

import numpy as np
import pytest
import torch
from lrpseg.core.lrp import (
    DEFAULT_RULE_SET,
    RULE_SETS,
    TABLE_1,
    RuleSet,
    explain,
    relevance_tensor,
    table_composite,
    zbox_bounds,
)
from lrpseg.core.lrp import rules as fast_rules
from lrpseg.core.models import CONV_LAYER_NAMES, FC_LAYER_NAMES, HEADS, build_vgg_a
from torch import nn
from zennit.core import Stabilizer
from zennit.rules import AlphaBeta, Epsilon, Gamma, Pass, ZBox

SIZE = 64
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_model(head, seed=0, zero_bias=False):
    torch.manual_seed(seed)
    model = build_vgg_a(head, width=0.125, input_size=SIZE, mean=MEAN, std=STD)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                module.bias.normal_(0, 0.05) if not zero_bias else module.bias.zero_()
    return model.eval()


def images(n, seed=1, dtype=torch.float64):
    """Normalised images of pixel values in [0, 1], so that z^B's bounds hold."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.rand(n, 3, SIZE, SIZE, generator=generator, dtype=dtype)
    mean = torch.tensor(MEAN, dtype=dtype).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=dtype).view(1, 3, 1, 1)
    return (pixels - mean) / std


def max_relative_error(actual, expected):
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def registered_rules(model, composite):
    """Qualified layer name -> the zennit hook object the composite attaches to it."""
    found = {}
    with composite.context(model):
        for name, module in model.named_modules():
            hooks = {id(h.__self__): h.__self__ for h in module._forward_hooks.values()}
            if hooks:
                (found[name],) = hooks.values()
    return found


def assert_no_hooks(model):
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
        assert not module._backward_hooks and not module._backward_pre_hooks


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("rule_set", ["ours", "montavon", "epsilon_plus"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("maxpool", ["wta", "avg"])
def test_fast_engine_equals_zennit_stock_rules(head, rule_set, batch, maxpool):
    model = small_model(head)
    x = images(batch)
    fast = explain(model, x, rule_set=rule_set, maxpool=maxpool, dtype=torch.float64)
    stock = explain(model, x, rule_set=f"zennit_{rule_set}", maxpool=maxpool, dtype=torch.float64)
    assert (np.abs(stock.relevance).sum(axis=(1, 2)) > 1e-2).all()  # real, non-vanishing explanations
    assert max_relative_error(fast.relevance, stock.relevance) <= 1e-6
    np.testing.assert_array_equal(fast.logits, stock.logits)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("rule_set", ["ours", "montavon", "epsilon_plus"])
def test_fast_engine_agrees_with_stock_rules_in_float32(head, rule_set):
    """float32 (the default) keeps the agreement, also where α-β derives W⁻x + b⁻ from the layer output."""
    model = small_model(head)
    x = images(2, dtype=torch.float32)
    fast = explain(model, x, rule_set=rule_set)
    stock = explain(model, x, rule_set=f"zennit_{rule_set}")
    assert fast.relevance.dtype == np.float32
    assert max_relative_error(fast.relevance, stock.relevance) <= 1e-5


def test_avg_pool_redistribution_differs_from_winner_take_all():
    model = small_model("128n")
    wta = explain(model, images(1), maxpool="wta", dtype=torch.float64)
    avg = explain(model, images(1), maxpool="avg", dtype=torch.float64)
    assert (wta.maxpool, avg.maxpool) == ("wta", "avg")
    assert max_relative_error(avg.relevance, wta.relevance) > 1e-3


EXPECTED_TABLE_1 = {  # the paper's Table 1, written out layer by layer
    "ours": {
        "conv1_1": "zbox", "conv2_1": "alpha_beta", "conv3_1": "alpha_beta", "conv3_2": "gamma",
        "conv4_1": "gamma", "conv4_2": "gamma", "conv5_1": "gamma", "conv5_2": "gamma", "fc": "epsilon",
    },
    "montavon": {
        "conv1_1": "zbox", "conv2_1": "gamma", "conv3_1": "gamma", "conv3_2": "gamma",
        "conv4_1": "epsilon", "conv4_2": "epsilon", "conv5_1": "epsilon", "conv5_2": "epsilon", "fc": "lrp0",
    },
}  # fmt: skip


def _check_rule(hook, rule, fast, low, high):
    """Assert that ``hook`` is ``rule`` with the paper's parameters (fast or zennit stock form)."""
    if not fast:
        stock = {"zbox": ZBox, "alpha_beta": AlphaBeta, "gamma": Gamma, "epsilon": Epsilon, "lrp0": Epsilon}
        assert type(hook) is stock[rule]
        return
    if rule == "zbox":
        assert type(hook) is fast_rules.FastZBox
        assert torch.equal(hook.low, low) and torch.equal(hook.high, high)
    elif rule == "alpha_beta":
        assert type(hook) is fast_rules.FastAlphaBeta and (hook.alpha, hook.beta) == (2.0, 1.0)
    elif rule == "gamma":
        assert type(hook) is fast_rules.FastGamma and hook.gamma == 0.25
    elif rule == "epsilon":
        assert type(hook) is fast_rules.FastEpsilon
        assert isinstance(hook.stabilizer, Stabilizer)
        stabilizer = hook.stabilizer
        assert (stabilizer.epsilon, stabilizer.norm_scale, stabilizer.dim) == (0.25, True, None)
    else:
        assert type(hook) is fast_rules.FastEpsilon and hook.stabilizer.epsilon == 1e-6
        assert not hook.stabilizer.norm_scale


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("rule_set", ["ours", "montavon"])
@pytest.mark.parametrize("fast", [True, False])
def test_each_layer_gets_the_rule_of_table_1(head, rule_set, fast):
    model = small_model(head)
    expected = EXPECTED_TABLE_1[rule_set]
    assert dict(TABLE_1[rule_set]) == expected
    registry_name = rule_set if fast else f"zennit_{rule_set}"
    hooks = registered_rules(model, RULE_SETS[registry_name](model))
    low, high = zbox_bounds(model)
    np.testing.assert_allclose(low.flatten(), [-m / s for m, s in zip(MEAN, STD, strict=True)])
    np.testing.assert_allclose(high.flatten(), [(1 - m) / s for m, s in zip(MEAN, STD, strict=True)])
    for name in CONV_LAYER_NAMES:
        _check_rule(hooks.pop(f"features.{name}"), expected[name], fast, low, high)
    for name in FC_LAYER_NAMES[head]:
        _check_rule(hooks.pop(f"classifier.{name}"), expected["fc"], fast, low, high)
    relus = {name for name, module in model.named_modules() if isinstance(module, nn.ReLU)}
    if fast:
        assert not hooks  # ReLU and max-pool keep their own gradient (relevance is zero where ReLU cuts)
    else:
        assert set(hooks) == relus and all(type(hook) is Pass for hook in hooks.values())


def test_fast_rules_are_used_only_where_the_input_is_non_negative():
    model = small_model("128n")
    table = {**TABLE_1["ours"], "conv1_1": "gamma", "conv2_1": "gamma"}
    hooks = registered_rules(model, table_composite(model, table, fast=True))
    assert type(hooks["features.conv1_1"]) is Gamma  # signed image input: zennit's stock rule
    assert type(hooks["features.conv2_1"]) is fast_rules.FastGamma
    reference = RuleSet("ref", "", lambda m, mp: table_composite(m, table, mp, fast=False))
    fast = RuleSet("fast", "", lambda m, mp: table_composite(m, table, mp, fast=True))
    model = model.double()
    expected, _ = relevance_tensor(model, images(2), 1, reference)
    actual, _ = relevance_tensor(model, images(2), 1, fast)
    assert max_relative_error(actual.numpy(), expected.numpy()) <= 1e-6


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("maxpool", ["wta", "avg"])
def test_lrp0_with_zbox_conserves_the_start(head, fast, maxpool):
    model = small_model(head, zero_bias=True).double()
    table = {**dict.fromkeys(CONV_LAYER_NAMES, "lrp0"), "conv1_1": "zbox", "fc": "lrp0"}
    rule_set = RuleSet("lrp0", "", lambda m, mp: table_composite(m, table, mp, fast=fast, stabilizer=1e-12))
    for target in (0, 1):
        relevance, logits = relevance_tensor(model, images(3), target, rule_set, maxpool, start="logit")
        assert torch.all(logits[:, target].abs() > 1e-3)
        torch.testing.assert_close(relevance.sum(dim=(1, 2, 3)), logits[:, target], rtol=1e-6, atol=0)
        relevance, _ = relevance_tensor(model, images(3), target, rule_set, maxpool, start="logodds")
        log_odds = logits[:, target] - logits[:, 1 - target]
        torch.testing.assert_close(relevance.sum(dim=(1, 2, 3)), log_odds, rtol=1e-6, atol=1e-12)


def test_batch_explanation_equals_single_image_explanations():
    model = small_model("onefc")
    x = images(3)
    batch = explain(model, x, rule_set="ours", dtype=torch.float64)
    for i in range(3):
        single = explain(model, x[i : i + 1], rule_set="ours", dtype=torch.float64)
        np.testing.assert_allclose(batch.relevance[i], single.relevance[0], rtol=1e-10, atol=1e-14)


def test_explanation_fields_dtypes_and_model_left_untouched():
    model = small_model("128n").train()
    x = images(2, dtype=torch.float32)
    result = explain(model, x, target=1)
    assert result.relevance.shape == (2, SIZE, SIZE) and result.relevance.dtype == np.float32
    assert result.logits.shape == (2, 2)
    assert (result.rule_set, result.maxpool, result.target) == (DEFAULT_RULE_SET, "wta", 1)
    with torch.no_grad():
        np.testing.assert_allclose(result.logits, model.eval()(x).numpy(), rtol=1e-5, atol=1e-6)
    model.train()
    as64 = explain(model, x, target=0, dtype=torch.float64)
    assert as64.relevance.dtype == np.float64 and as64.target == 0
    assert next(model.parameters()).dtype == torch.float32 and model.training
    assert not x.requires_grad
    np.testing.assert_allclose(result.relevance, explain(model, x, dtype=torch.float64).relevance, atol=1e-4)
    assert_no_hooks(model)


def test_no_hooks_remain_after_errors(monkeypatch):
    model = small_model("128n")
    with pytest.raises(RuntimeError):  # forward fails: the image size does not fit fc1
        explain(model, torch.randn(1, 3, 96, 96))
    assert_no_hooks(model)

    def broken(*args):
        raise ArithmeticError("backward failed")

    monkeypatch.setattr(fast_rules.FastGamma, "relevance", broken)
    with pytest.raises(ArithmeticError):
        explain(model, images(1, dtype=torch.float32), rule_set="ours")
    assert_no_hooks(model)
    assert not model.training


@pytest.mark.parametrize(
    "kwargs",
    [{"rule_set": "nope"}, {"maxpool": "max"}, {"target": 2}, {"target": -1}],
)
def test_invalid_arguments_are_refused(kwargs):
    model = small_model("onefc")
    with pytest.raises(ValueError):
        explain(model, images(1, dtype=torch.float32), **kwargs)
    with pytest.raises(ValueError, match="shape"):
        explain(model, torch.zeros(3, SIZE, SIZE))


def test_registry_lists_paper_and_zennit_rule_sets_and_all_run():
    expected = {"ours", "montavon", "zennit_ours", "zennit_montavon", "epsilon_gamma_box", "epsilon_plus",
                "zennit_epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1",
                "epsilon_alpha2_beta1_flat"}  # fmt: skip
    assert set(RULE_SETS) == expected
    model = small_model("onefc")
    x = images(1, dtype=torch.float32)
    for name, entry in RULE_SETS.items():
        assert entry.name == name and entry.description
        for maxpool in ("wta", "avg"):
            relevance = explain(model, x, rule_set=name, maxpool=maxpool).relevance
            assert np.isfinite(relevance).all() and np.abs(relevance).max() > 0
    assert_no_hooks(model)


def test_fast_rules_follow_weight_changes():
    """Derived weights are cached between calls; in-place updates and new parameters must invalidate them."""
    model = small_model("128n").double()
    x = images(1)

    def fast_vs_stock():
        fast = explain(model, x, rule_set="ours", dtype=torch.float64).relevance
        stock = explain(model, x, rule_set="zennit_ours", dtype=torch.float64).relevance
        return fast, max_relative_error(fast, stock)

    before, error = fast_vs_stock()
    assert error <= 1e-6
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.zero_grad()
    model(x)[:, 1].sum().backward()
    optimizer.step()  # in-place update of every parameter
    after_step, error = fast_vs_stock()
    assert error <= 1e-6 and max_relative_error(after_step, before) > 1e-3
    conv = model.features.conv2_1
    conv.weight = nn.Parameter(conv.weight.detach().flip(-1).clone())
    conv.bias = nn.Parameter(conv.bias.detach() + 0.1)
    replaced, error = fast_vs_stock()
    assert error <= 1e-6 and max_relative_error(replaced, after_step) > 1e-3


@pytest.mark.parametrize(
    "stride, padding, dilation, size", [(1, 1, 1, 9), (2, 1, 1, 8), (2, 0, 1, 9), (1, 2, 2, 7)]
)
def test_direct_input_gradient_matches_autograd(stride, padding, dilation, size):
    conv = nn.Conv2d(3, 4, 3, stride=stride, padding=padding, dilation=dilation).double()
    x = torch.randn(2, 3, size, size, dtype=torch.float64, requires_grad=True)
    out = conv(x)
    grad = torch.randn_like(out)
    (expected,) = torch.autograd.grad(out, x, grad)
    actual = fast_rules._input_gradient(conv, x.shape, conv.weight.detach(), grad)
    torch.testing.assert_close(actual, expected)


@pytest.mark.parametrize("head", HEADS)
def test_epsilon_plus_runs_fast_z_plus_wherever_the_input_is_non_negative(head):
    from zennit.rules import ZPlus

    model = small_model(head)
    hooks = registered_rules(model, RULE_SETS["epsilon_plus"](model))
    assert type(hooks.pop("features.conv1_1")) is ZPlus  # signed image input: zennit's stock rule
    for name in CONV_LAYER_NAMES[1:]:
        assert type(hooks.pop(f"features.{name}")) is fast_rules.FastZPlus
    for name in FC_LAYER_NAMES[head]:
        hook = hooks.pop(f"classifier.{name}")
        assert type(hook) is fast_rules.FastEpsilon and hook.label == "lrp0"
    assert not hooks
