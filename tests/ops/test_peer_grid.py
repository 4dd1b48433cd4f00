"""mamba_ssm's own test grids for the scan and the state update, run on hamburg_mamba without an adapter.

The tests re-express state-spaces/mamba's tests/ops/test_selective_scan.py (`test_selective_scan`) and
tests/ops/triton/test_selective_state_update.py (plain, with heads, with state_batch_indices, with both), as of
commit e9594ce1c732d97440f0332fdc43170a2294dbfa, on each device of the `device` fixture (tests/ops/conftest.py)
where mamba_ssm's run on "cuda". They call `selective_scan_fn` / `selective_state_update` exactly as mamba_ssm's
tests call mamba_ssm's (same positional and keyword forms, shapes, layouts, dtypes, seeds and tolerances, every
tensor made on the test's device) and compare with `selective_scan_ref` / `selective_state_update_ref`, which,
as mamba_ssm's references, take the same tensors and compute in float32. The scan grid is mamba_ssm's full grid
(the value lists its file keeps commented out: every itype, thirteen seqlens, every flag); complex wtype is
refused here, so it gets one refusal test per function instead.

Default run: a deterministic pairwise sample of each grid (`pairwise`: every pair of parameter values, the
invalid ones excepted, in at least one case; so every seqlen with every itype). Full grids (6240 scan cases,
540 state-update cases): `HAMBURG_MAMBA_PEER_GRID=full pytest tests/ops/test_peer_grid.py`.

Glossary: B batch, D channels (dim), L steps (seqlen), N state size (dstate), G groups, H heads, P headdim.
"""

from __future__ import annotations

import itertools
import os

import pytest
import torch

from hamburg_mamba import selective_scan_fn, selective_scan_ref, selective_state_update, selective_state_update_ref

FULL_GRID = os.environ.get("HAMBURG_MAMBA_PEER_GRID") == "full"
ITYPES = [torch.float32, torch.float16, torch.bfloat16]


def pairwise(grid: dict[str, list], allowed=lambda case: True) -> list[dict]:
    """Cases covering every allowed pair of values of two parameters (greedy, deterministic).

    `allowed(case)` judges a partial case (a dict of some of the parameters). Each new case starts from the
    first uncovered pair and fills the other parameters, in grid order, with the value that covers the most
    uncovered pairs with those already chosen (the first such value on ties)."""
    names = list(grid)
    index = {name: range(len(values)) for name, values in grid.items()}

    def valid(picks: dict[str, int]) -> bool:
        return allowed({name: grid[name][i] for name, i in picks.items()})

    uncovered = {
        (a, i, b, j)
        for a, b in itertools.combinations(names, 2)
        for i in index[a]
        for j in index[b]
        if valid({a: i, b: j})
    }
    cases = []
    while uncovered:
        a, i, b, j = min(uncovered, key=lambda p: (names.index(p[0]), p[1], names.index(p[2]), p[3]))
        picks = {a: i, b: j}
        for name in names:
            if name in picks:
                continue
            options = [k for k in index[name] if valid({**picks, name: k})]
            picks[name] = max(
                options,
                key=lambda k: (
                    sum(_pair(other, v, name, k, names) in uncovered for other, v in picks.items()),
                    -k,
                ),
            )
        uncovered -= {_pair(x, picks[x], y, picks[y], names) for x, y in itertools.combinations(names, 2)}
        cases.append({name: grid[name][picks[name]] for name in names})
    return cases


def _pair(a: str, i: int, b: str, j: int, names: list[str]) -> tuple:
    return (a, i, b, j) if names.index(a) < names.index(b) else (b, j, a, i)


def grid_params(grid: dict[str, list], allowed=lambda case: True, marks=lambda case: ()) -> list:
    """pytest params of the full grid (HAMBURG_MAMBA_PEER_GRID=full) or of its pairwise sample; `marks(case)`
    gives a case's pytest marks."""
    if FULL_GRID:
        cases = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
        cases = [case for case in cases if allowed(case)]
    else:
        cases = pairwise(grid, allowed)
    return [
        pytest.param(*case.values(), marks=marks(case), id="-".join(_id(n, v) for n, v in case.items()))
        for case in cases
    ]


def _id(name: str, value) -> str:
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    if isinstance(value, bool):
        return name if value else f"no_{name}"
    return f"{name}{value}"


# ------------------------------------------------------------------------------------------------------------
# selective_scan_fn: mamba_ssm's test_selective_scan

SCAN_GRID = {
    "itype": ITYPES,
    "seqlen": [8, 16, 32, 64, 128, 256, 372, 512, 784, 1024, 1134, 2048, 4096],
    "return_last_state": [False, True],
    "has_delta_bias": [False, True],
    "delta_softplus": [False, True],
    "has_z": [False, True],
    "has_D": [False, True],
    "varBC_groups": [1, 2],
    "is_variable_C": [False, True],
    "is_variable_B": [False, True],
}


def grouped_bc_needs_variable(case: dict) -> bool:
    """mamba_ssm skips varBC_groups > 1 unless B and C are both input-dependent ((D, N) has no groups)."""
    return case.get("varBC_groups", 1) == 1 or (case.get("is_variable_B", True) and case.get("is_variable_C", True))


def leaf(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().clone().requires_grad_()


@pytest.mark.parametrize(list(SCAN_GRID), grid_params(SCAN_GRID, grouped_bc_needs_variable))
def test_selective_scan(
    itype,
    seqlen,
    return_last_state,
    has_delta_bias,
    delta_softplus,
    has_z,
    has_D,
    varBC_groups,
    is_variable_C,
    is_variable_B,
    device,
):
    wtype = torch.float32
    rtol, atol = (6e-4, 2e-3) if itype == torch.float32 else (3e-3, 5e-3)
    if itype == torch.bfloat16:
        rtol, atol = 3e-2, 5e-2
    rtolw, atolw = 1e-3, 1e-3
    if has_z:  # mamba_ssm: with z the errors on the weights are higher
        rtolw, atolw = max(rtolw, rtol), max(atolw, atol)
    torch.random.manual_seed(0)
    batch_size, dim, dstate = 2, 4, 8
    A = (-0.5 * torch.rand(dim, dstate, device=device, dtype=wtype)).requires_grad_()

    def projection(is_variable: bool) -> torch.Tensor:
        if not is_variable:
            shape = (dim, dstate)
        elif varBC_groups == 1:
            shape = (batch_size, dstate, seqlen)
        else:
            shape = (batch_size, varBC_groups, dstate, seqlen)
        return torch.randn(*shape, device=device, dtype=itype if is_variable else wtype, requires_grad=True)

    B = projection(is_variable_B)
    C = projection(is_variable_C)
    D = torch.randn(dim, device=device, dtype=torch.float32, requires_grad=True) if has_D else None
    z = torch.randn(batch_size, dim, seqlen, device=device, dtype=itype, requires_grad=True) if has_z else None
    delta_bias = (
        (0.5 * torch.rand(dim, device=device, dtype=torch.float32)).requires_grad_() if has_delta_bias else None
    )
    u = torch.randn(batch_size, dim, seqlen, device=device, dtype=itype, requires_grad=True)
    delta = (0.5 * torch.rand(batch_size, dim, seqlen, device=device, dtype=itype)).requires_grad_()
    A_ref, B_ref, C_ref, D_ref, z_ref, u_ref, delta_ref, delta_bias_ref = map(
        leaf, (A, B, C, D, z, u, delta, delta_bias)
    )

    # mamba_ssm's `out, *rest = ...` would split a bare `out` along the batch when return_last_state is False.
    result = selective_scan_fn(
        u, delta, A, B, C, D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus,
        return_last_state=return_last_state,
    )  # fmt: skip
    result_ref = selective_scan_ref(
        u_ref, delta_ref, A_ref, B_ref, C_ref, D_ref, z=z_ref, delta_bias=delta_bias_ref,
        delta_softplus=delta_softplus, return_last_state=return_last_state,
    )  # fmt: skip
    out, out_ref = (result[0], result_ref[0]) if return_last_state else (result, result_ref)
    assert out.shape == u.shape and out.dtype == itype
    assert torch.allclose(out, out_ref, rtol=rtol, atol=atol)
    if return_last_state:
        (_, state), (_, state_ref) = result, result_ref
        assert state.shape == (batch_size, dim, dstate) and state.dtype == state_ref.dtype == torch.float32
        assert torch.allclose(state, state_ref, rtol=rtol, atol=atol)

    g = torch.randn_like(out)
    out_ref.backward(g)
    out.backward(g)
    assert torch.allclose(u.grad, u_ref.grad.to(dtype=itype), rtol=rtol * 2, atol=atol * 2)
    assert torch.allclose(delta.grad, delta_ref.grad.to(dtype=itype), rtol=rtol * 5, atol=atol * 10)
    assert torch.allclose(A.grad, A_ref.grad, rtol=rtolw, atol=atolw * 5)
    assert torch.allclose(
        B.grad, B_ref.grad, rtol=rtol if is_variable_B else rtolw, atol=atol if is_variable_B else atolw
    )
    assert torch.allclose(
        C.grad, C_ref.grad, rtol=rtol if is_variable_C else rtolw, atol=atol if is_variable_C else atolw
    )
    if has_D:
        assert torch.allclose(D.grad, D_ref.grad, rtol=rtolw, atol=atolw)
    if has_z:
        assert torch.allclose(z.grad, z_ref.grad, rtol=rtolw, atol=atolw)
    if has_delta_bias:
        assert torch.allclose(delta_bias.grad, delta_bias_ref.grad, rtol=rtolw, atol=atolw)


@pytest.mark.parametrize("is_variable_B", [False, True])
def test_selective_scan_refuses_complex_weights(is_variable_B, device):
    """mamba_ssm's wtype=complex64 cases: complex A (with (D, N) complex B, or real (B, N, 2L) B holding real and
    imaginary parts) is refused by name."""
    wtype, itype = torch.complex64, torch.float32
    batch_size, dim, dstate, seqlen = 2, 4, 8, 128
    torch.random.manual_seed(0)
    A = (-0.5 * torch.rand(dim, dstate, device=device, dtype=wtype)).requires_grad_()
    B_shape = (batch_size, dstate, seqlen * 2) if is_variable_B else (dim, dstate)
    B = torch.randn(*B_shape, device=device, dtype=itype if is_variable_B else wtype, requires_grad=True)
    C = torch.randn(batch_size, dstate, seqlen * 2, device=device, dtype=itype, requires_grad=True)
    u = torch.randn(batch_size, dim, seqlen, device=device, dtype=itype, requires_grad=True)
    delta = (0.5 * torch.rand(batch_size, dim, seqlen, device=device, dtype=itype)).requires_grad_()
    with pytest.raises(ValueError, match="complex A .* is not supported"):
        selective_scan_fn(u, delta, A, B, C, None, z=None, delta_bias=None, delta_softplus=True)


# ------------------------------------------------------------------------------------------------------------
# selective_state_update: mamba_ssm's four state-update tests


def update_tolerance(itype: torch.dtype, half: tuple[float, float], bfloat16: tuple[float, float]):
    """mamba_ssm's (rtol, atol): (3e-4, 1e-3) for float32, its per-test values for float16 and bfloat16."""
    return {torch.float32: (3e-4, 1e-3), torch.float16: half, torch.bfloat16: bfloat16}[itype]


def channel_inputs(batch_size: int, dim: int, dstate: int, has_z: bool, itype: torch.dtype, device: str):
    """x, dt, dt_bias, A, B, C, D, z of the tests without a heads axis, drawn in mamba_ssm's order."""
    x = torch.randn(batch_size, dim, device=device, dtype=itype)
    dt = torch.randn(batch_size, dim, device=device, dtype=itype)
    dt_bias = torch.rand(dim, device=device) - 4.0
    A = -torch.rand(dim, dstate, device=device) - 1.0
    B = torch.randn(batch_size, dstate, device=device)
    C = torch.randn(batch_size, dstate, device=device)
    D = torch.randn(dim, device=device)
    z = torch.randn_like(x) if has_z else None
    return x, dt, dt_bias, A, B, C, D, z


def head_inputs(batch_size, nheads, headdim, dstate, ngroups, has_z, tie_hdim, itype, device):
    """x, dt, dt_bias, A, B, C, D, z of the tests with heads, drawn in mamba_ssm's order; tie_hdim repeats dt,
    dt_bias, A and D over the channels of a head (Mamba-2's per-head parameters)."""
    x = torch.randn(batch_size, nheads, headdim, device=device, dtype=itype)
    if not tie_hdim:
        dt = torch.randn(batch_size, nheads, headdim, device=device, dtype=itype)
        dt_bias = torch.rand(nheads, headdim, device=device) - 4.0
        A = -torch.rand(nheads, headdim, dstate, device=device) - 1.0
        D = torch.randn(nheads, headdim, device=device)
    else:
        dt = torch.randn(batch_size, nheads, device=device, dtype=itype)[:, :, None].expand(-1, -1, headdim)
        dt_bias = (torch.rand(nheads, device=device) - 4.0)[:, None].expand(-1, headdim)
        A = (-torch.rand(nheads, device=device) - 1.0)[:, None, None].expand(-1, headdim, dstate)
        D = torch.randn(nheads, device=device)[:, None].expand(-1, headdim)
    B = torch.randn(batch_size, ngroups, dstate, device=device)
    C = torch.randn(batch_size, ngroups, dstate, device=device)
    z = torch.randn_like(x) if has_z else None
    return x, dt, dt_bias, A, B, C, D, z


CHANNEL_GRID = {"dim": [2048, 2048 + 16, 4096], "dstate": [16, 32, 64], "has_z": [False, True], "itype": ITYPES}
HEAD_GRID = {
    "dim": [2048, 4096],
    "dstate": [16, 32, 64],
    "ngroups": [1, 2, 4],
    "tie_hdim": [False, True],
    "has_z": [False, True],
    "itype": ITYPES,
}


@pytest.mark.parametrize(list(CHANNEL_GRID), grid_params(CHANNEL_GRID))
def test_selective_state_update(dim, dstate, has_z, itype, device):
    rtol, atol = update_tolerance(itype, half=(5e-3, 1e-2), bfloat16=(1e-2, 5e-2))
    torch.random.manual_seed(0)
    batch_size = 2
    state = torch.randn(batch_size, dim, dstate, dtype=itype, device=device)
    x, dt, dt_bias, A, B, C, D, z = channel_inputs(batch_size, dim, dstate, has_z, itype, device)
    state_ref = state.detach().clone()
    out = selective_state_update(state, x, dt, A, B, C, D=D, z=z, dt_bias=dt_bias, dt_softplus=True)
    out_ref = selective_state_update_ref(state_ref, x, dt, A, B, C, D=D, z=z, dt_bias=dt_bias, dt_softplus=True)
    assert torch.allclose(state, state_ref, rtol=rtol, atol=atol)
    assert torch.allclose(out, out_ref, rtol=rtol, atol=atol)


@pytest.mark.parametrize(list(HEAD_GRID), grid_params(HEAD_GRID))
def test_selective_state_update_with_heads(dim, dstate, ngroups, tie_hdim, has_z, itype, device):
    rtol, atol = update_tolerance(itype, half=(5e-3, 3e-2), bfloat16=(1e-2, 1e-1))
    torch.random.manual_seed(0)
    batch_size, headdim = 2, 64
    nheads = dim // headdim
    state = torch.randn(batch_size, nheads, headdim, dstate, dtype=itype, device=device)
    x, dt, dt_bias, A, B, C, D, z = head_inputs(
        batch_size, nheads, headdim, dstate, ngroups, has_z, tie_hdim, itype, device
    )
    state_ref = state.detach().clone()
    out = selective_state_update(state, x, dt, A, B, C, D=D, z=z, dt_bias=dt_bias, dt_softplus=True)
    out_ref = selective_state_update_ref(state_ref, x, dt, A, B, C, D=D, z=z, dt_bias=dt_bias, dt_softplus=True)
    assert torch.allclose(state, state_ref, rtol=rtol, atol=atol)
    assert torch.allclose(out, out_ref, rtol=rtol, atol=atol)


@pytest.mark.parametrize(list(CHANNEL_GRID), grid_params(CHANNEL_GRID))
def test_selective_state_update_with_batch_indices(dim, dstate, has_z, itype, device):
    rtol, atol = update_tolerance(itype, half=(5e-3, 1e-2), bfloat16=(6e-2, 6e-2))
    torch.random.manual_seed(0)
    batch_size = 16
    total_entries = 10 * batch_size
    state = torch.randn(total_entries, dim, dstate, dtype=itype, device=device)
    state_indices = torch.randperm(total_entries)[:batch_size].to(dtype=torch.int32, device=device)
    x, dt, dt_bias, A, B, C, D, z = channel_inputs(batch_size, dim, dstate, has_z, itype, device)
    state_ref = state[state_indices, :].detach().clone()
    untouched = state.detach().clone()
    out = selective_state_update(
        state, x, dt, A, B, C, D=D, z=z, dt_bias=dt_bias, dt_softplus=True, state_batch_indices=state_indices
    )
    out_ref = selective_state_update_ref(state_ref, x, dt, A, B, C, D=D, z=z, dt_bias=dt_bias, dt_softplus=True)
    assert torch.allclose(state[state_indices, :], state_ref, rtol=rtol, atol=atol)
    assert torch.allclose(out, out_ref, rtol=rtol, atol=atol)
    other_rows = torch.ones(total_entries, dtype=torch.bool, device=device).index_fill_(0, state_indices.long(), False)
    assert torch.equal(state[other_rows], untouched[other_rows])


@pytest.mark.parametrize(list(HEAD_GRID), grid_params(HEAD_GRID))
def test_selective_state_update_with_heads_with_batch_indices(dim, dstate, ngroups, tie_hdim, has_z, itype, device):
    rtol, atol = update_tolerance(itype, half=(5e-3, 3e-2), bfloat16=(1e-1, 1e-1))
    torch.random.manual_seed(0)
    batch_size, headdim = 16, 64
    nheads = dim // headdim
    total_entries = 10 * batch_size
    state = torch.randn(total_entries, nheads, headdim, dstate, dtype=itype, device=device)
    state_indices = torch.randperm(total_entries)[:batch_size].to(dtype=torch.int32, device=device)
    x, dt, dt_bias, A, B, C, D, z = head_inputs(
        batch_size, nheads, headdim, dstate, ngroups, has_z, tie_hdim, itype, device
    )
    state_ref = state[state_indices, :].detach().clone()
    out = selective_state_update(
        state, x, dt, A, B, C, D=D, z=z, dt_bias=dt_bias, dt_softplus=True, state_batch_indices=state_indices
    )
    out_ref = selective_state_update_ref(state_ref, x, dt, A, B, C, D=D, z=z, dt_bias=dt_bias, dt_softplus=True)
    assert torch.allclose(state[state_indices, :], state_ref, rtol=rtol, atol=atol)
    assert torch.allclose(out, out_ref, rtol=rtol, atol=atol)


def test_selective_state_update_refuses_complex_weights(device):
    """A complex A (mamba_ssm's S4D variant) in the state update is refused by name."""
    batch_size, dim, dstate = 2, 64, 16
    torch.random.manual_seed(0)
    state = torch.randn(batch_size, dim, dstate, device=device)
    x, dt, dt_bias, _, B, C, D, _ = channel_inputs(batch_size, dim, dstate, False, torch.float32, device)
    A = -torch.rand(dim, dstate, device=device, dtype=torch.complex64) - 1.0
    with pytest.raises(ValueError, match="complex A .* is not supported"):
        selective_state_update(state, x, dt, A, B, C, D=D, dt_bias=dt_bias, dt_softplus=True)
