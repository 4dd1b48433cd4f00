"""The float64 references against plain per-step loops of their documented formulas: tests that kill mutants of
ops/reference.py (docs/testing.md, "Mutation testing")."""

import math

import pytest
import torch

from hamburg_mamba.ops.reference import effective_step, selective_scan_ref, selective_state_update_ref

DT = torch.float64


def _softplus(v: float) -> float:
    return math.log1p(math.exp(v))


def test_input_independent_B_C_of_shape_D_N_equal_a_per_step_loop():
    g = torch.Generator().manual_seed(0)
    batch, dim, n, L = 2, 3, 2, 4
    u, delta = torch.randn(batch, dim, L, generator=g, dtype=DT), torch.rand(batch, dim, L, generator=g, dtype=DT)
    A = -torch.rand(dim, n, generator=g, dtype=DT)
    B, C = torch.randn(dim, n, generator=g, dtype=DT), torch.randn(dim, n, generator=g, dtype=DT)
    got = selective_scan_ref(u, delta, A, B, C)
    want = torch.zeros(batch, dim, L, dtype=DT)
    for b in range(batch):
        for d in range(dim):
            h = [0.0] * n
            for t in range(L):
                s = float(delta[b, d, t])
                h = [math.exp(s * float(A[d, k])) * h[k] + s * float(B[d, k]) * float(u[b, d, t]) for k in range(n)]
                want[b, d, t] = sum(h[k] * float(C[d, k]) for k in range(n))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_effective_step_of_one_step_per_channel_by_hand():
    delta = torch.tensor([[0.5, -1.0, 2.0], [0.0, 3.0, -0.25]])  # (B, D) = (2, 3): float32 computes in float32
    bias = torch.tensor([0.1, 0.2, 0.3])
    scale = torch.tensor([2.0, 0.5], dtype=DT)  # a float64 scale does not lift the compute dtype
    got = effective_step(delta, bias, True, scale)
    want = [[_softplus(float(delta[b, d] + bias[d])) * float(scale[b]) for d in range(3)] for b in range(2)]
    assert got.dtype == torch.float32 and got.shape == (2, 3)
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float32), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["A", "B", "C"])
def test_a_complex_A_B_or_C_is_refused_by_name(name):
    scan = dict(
        u=torch.randn(1, 2, 3),
        delta=torch.rand(1, 2, 3),
        A=-torch.rand(2, 4),
        B=torch.randn(1, 4, 3),
        C=torch.randn(1, 4, 3),
    )
    scan[name] = scan[name].to(torch.complex64)
    with pytest.raises(ValueError, match=f"selective_scan_ref: argument '{name}' is complex"):
        selective_scan_ref(**scan)
    step = dict(A=-torch.rand(2, 4), B=torch.randn(1, 4), C=torch.randn(1, 4))
    step[name] = step[name].to(torch.complex64)
    with pytest.raises(ValueError, match=f"selective_state_update_ref: argument '{name}' is complex"):
        selective_state_update_ref(torch.zeros(1, 2, 4), torch.randn(1, 2), torch.rand(1, 2), **step)


def _step_by_hand(state, x, dt, A, B, C, D, z, dt_bias, dt_scale):
    """One step per (channel, n) of the docstring's math; updates `state` (D, N) and returns (D,) outputs."""
    out = []
    for d in range(len(state)):
        s = dt[d] + (0.0 if dt_bias is None else dt_bias[d])
        s = _softplus(s) * dt_scale
        for k in range(len(state[d])):
            state[d][k] = math.exp(s * A[d][k]) * state[d][k] + s * B[k] * x[d]
        y = sum(state[d][k] * C[k] for k in range(len(state[d]))) + (0.0 if D is None else D[d] * x[d])
        out.append(y * (z[d] / (1.0 + math.exp(-z[d]))))
    return out


def test_state_cache_rows_equal_a_plain_loop_over_the_batch():
    g = torch.Generator().manual_seed(1)
    S, batch, dim, n = 4, 3, 2, 3
    cache = torch.randn(S, dim, n, generator=g, dtype=DT)
    x, dt, z = (torch.randn(batch, dim, generator=g, dtype=DT) for _ in range(3))
    A = -torch.rand(dim, n, generator=g, dtype=DT)
    B, C = torch.randn(batch, n, generator=g, dtype=DT), torch.randn(batch, n, generator=g, dtype=DT)
    D, dt_bias = torch.randn(dim, generator=g, dtype=DT), torch.randn(dim, generator=g, dtype=DT)
    dt_scale = torch.tensor([0.5, 2.0, 1.5], dtype=DT)
    rows = torch.tensor([2, -1, 0])  # -1: a padding slot
    want_cache, want = cache.tolist(), [[0.0] * dim for _ in range(batch)]
    for b, r in enumerate(rows.tolist()):
        if r >= 0:
            want[b] = _step_by_hand(
                want_cache[r],
                x[b].tolist(),
                dt[b].tolist(),
                A.tolist(),
                B[b].tolist(),
                C[b].tolist(),
                D.tolist(),
                z[b].tolist(),
                dt_bias.tolist(),
                float(dt_scale[b]),
            )
    got = selective_state_update_ref(
        cache, x, dt, A, B, C, D, z, dt_bias, True, state_batch_indices=rows, dt_scale=dt_scale
    )
    torch.testing.assert_close(got, torch.tensor(want, dtype=DT), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(cache, torch.tensor(want_cache, dtype=DT), rtol=1e-12, atol=1e-12)  # rows 1, 3 kept


def test_state_update_without_dt_bias_by_hand():
    g = torch.Generator().manual_seed(2)
    batch, dim, n = 2, 3, 2
    state = torch.randn(batch, dim, n, generator=g, dtype=DT)
    x, dt, z = (torch.randn(batch, dim, generator=g, dtype=DT) for _ in range(3))
    A = -torch.rand(dim, n, generator=g, dtype=DT)
    B, C = torch.randn(batch, n, generator=g, dtype=DT), torch.randn(batch, n, generator=g, dtype=DT)
    want_state = state.tolist()
    want = [
        _step_by_hand(
            want_state[b],
            x[b].tolist(),
            dt[b].tolist(),
            A.tolist(),
            B[b].tolist(),
            C[b].tolist(),
            None,
            z[b].tolist(),
            None,
            1.0,
        )
        for b in range(batch)
    ]
    got = selective_state_update_ref(state, x, dt, A, B, C, z=z, dt_softplus=True)
    torch.testing.assert_close(got, torch.tensor(want, dtype=DT), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(state, torch.tensor(want_state, dtype=DT), rtol=1e-12, atol=1e-12)


def test_state_cache_rows_without_dt_scale_step_as_with_a_scale_of_one():
    g = torch.Generator().manual_seed(3)
    cache = torch.randn(3, 2, 2, generator=g, dtype=DT)
    x, dt = torch.randn(2, 2, generator=g, dtype=DT), torch.randn(2, 2, generator=g, dtype=DT)
    A = -torch.rand(2, 2, generator=g, dtype=DT)
    B, C = torch.randn(2, 2, generator=g, dtype=DT), torch.randn(2, 2, generator=g, dtype=DT)
    rows = torch.tensor([1, -1])
    ones, plain = cache.clone(), cache.clone()
    want = selective_state_update_ref(ones, x, dt, A, B, C, state_batch_indices=rows, dt_scale=torch.ones(2, dtype=DT))
    got = selective_state_update_ref(plain, x, dt, A, B, C, state_batch_indices=rows)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(plain, ones, rtol=0, atol=0)
