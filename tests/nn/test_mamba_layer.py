"""SelectiveSSMLayer: the prototype's check, causality, streaming, compiled vs reference, and an independent
implementation (transformers' MambaMixer) with the same weights."""

from __future__ import annotations

import pytest
import torch

from hamburg_mamba.nn import SelectiveSSMLayer, event_clock


def prototype_layer(**kwargs) -> SelectiveSSMLayer:
    return SelectiveSSMLayer(d_model=8, d_inner=8, d_state=4, dt_rank=2, d_conv=3, **kwargs)


@pytest.mark.parametrize("batch", [1, 2, 4, 33])
def test_prototype_minimal_check(batch):
    torch.manual_seed(0)
    layer = prototype_layer()
    assert layer(torch.randn(batch, 16, 8)).shape == (batch, 16, 8)


@pytest.mark.parametrize("batch", [1, 2, 33])
def test_layer_is_causal(batch):
    torch.manual_seed(0)
    layer = prototype_layer()
    x = torch.randn(batch, 16, 8)
    changed = x.clone()
    changed[:, 9:] = torch.randn(batch, 7, 8) * 5
    y, y_changed = layer(x), layer(changed)
    torch.testing.assert_close(y[:, :9], y_changed[:, :9], rtol=0, atol=0)
    assert not torch.allclose(y[:, 9:], y_changed[:, 9:])


def test_dt_init_is_log_uniform_in_range():
    torch.manual_seed(0)
    layer = SelectiveSSMLayer(d_model=64, d_state=16, dt_min=0.001, dt_max=0.1)
    dt = torch.nn.functional.softplus(layer.dt_proj.bias.detach())
    assert float(dt.min()) >= 0.001 * 0.999 and float(dt.max()) <= 0.1 * 1.001
    A = -torch.exp(layer.A_log.detach())
    torch.testing.assert_close(A[0], -torch.arange(1, 17, dtype=torch.float32))


def test_step_equals_forward_with_time_scale():
    torch.manual_seed(0)
    layer = SelectiveSSMLayer(d_model=16, d_state=8, d_conv=4)
    x = torch.randn(3, 20, 16)
    scale = torch.rand(3, 20) * 3
    with torch.no_grad():
        y, cache = layer(x, dt_scale=scale, return_state=True)
        live = layer.empty_cache(3)
        ys = torch.stack([layer.step(x[:, t], live, dt_scale=scale[:, t]) for t in range(20)], dim=1)
    torch.testing.assert_close(ys, y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(live["ssm"], cache["ssm"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(live["conv"], cache["conv"], rtol=1e-6, atol=1e-6)


def test_step_follows_parameter_updates():
    """The streaming path keeps A = -exp(A_log) between steps; an in-place update must not leave it stale."""
    torch.manual_seed(0)
    layer = SelectiveSSMLayer(d_model=16, d_state=8)
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        layer.step(x[:, 0], layer.empty_cache(2))
        layer.A_log.add_(0.7)
        y = layer(x)
        cache = layer.empty_cache(2)
        ys = torch.stack([layer.step(x[:, t], cache) for t in range(5)], dim=1)
    torch.testing.assert_close(ys, y, rtol=1e-5, atol=1e-5)


def test_zero_time_scale_is_a_no_op_of_the_state():
    torch.manual_seed(0)
    layer = SelectiveSSMLayer(d_model=16, d_state=8)
    x = torch.randn(2, 12, 16)
    lengths = torch.tensor([7, 12])
    mask = torch.arange(12)[None] < lengths[:, None]
    clock = event_clock(torch.rand(2, 12), mask, time_unit_h=1.0)
    assert bool((clock[~mask] == 0).all()) and bool((clock[mask] >= 1).all())
    with torch.no_grad():
        _, padded = layer(x, dt_scale=clock, lengths=lengths, return_state=True)
        _, alone = layer(x[:1, :7], dt_scale=clock[:1, :7], return_state=True)
    torch.testing.assert_close(padded["ssm"][:1], alone["ssm"], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(padded["conv"][:1], alone["conv"], rtol=1e-6, atol=1e-6)


def test_compiled_equals_reference_scan_float64_with_gradients():
    torch.manual_seed(0)
    compiled = SelectiveSSMLayer(d_model=16, d_state=8).double()
    reference = SelectiveSSMLayer(d_model=16, d_state=8, use_reference_scan=True).double()
    reference.load_state_dict(compiled.state_dict())
    x = torch.randn(3, 70, 16, dtype=torch.float64)  # > one checkpoint interval of the backward (64)
    scale = torch.rand(3, 70, dtype=torch.float64) * 2
    outs, grads = [], []
    for layer in (compiled, reference):
        xi = x.clone().requires_grad_()
        y = layer(xi, dt_scale=scale)
        (y * torch.linspace(-1, 1, 16, dtype=torch.float64)).sum().backward()
        outs.append(y.detach())
        grads.append([xi.grad] + [p.grad for p in layer.parameters()])
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-10, atol=1e-10)
    for g_compiled, g_reference in zip(*grads, strict=True):
        torch.testing.assert_close(g_compiled, g_reference, rtol=1e-8, atol=1e-10)


def test_matches_transformers_mamba_mixer():
    """An independent implementation of the same mixer: equal outputs with the same weights (clock = 1)."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.mamba.modeling_mamba import MambaMixer

    torch.manual_seed(0)
    ours = SelectiveSSMLayer(d_model=16, d_state=8, d_conv=4, expand=2).eval()
    config = transformers.MambaConfig(
        hidden_size=16,
        state_size=8,
        conv_kernel=4,
        expand=2,
        time_step_rank=1,
        num_hidden_layers=1,
        use_bias=False,
        use_conv_bias=True,
    )
    theirs = MambaMixer(config, layer_idx=0).eval()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 24, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-5)
