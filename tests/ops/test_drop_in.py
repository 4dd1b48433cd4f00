"""The ops as drop-ins for mamba_ssm's Mamba-1 kernels: `selective_scan_fn` with input-independent (D, N) B/C,
and `selective_state_update` with mamba_ssm's signature (heads axis, groups, state cache rows, state dtypes).

Every numerics test runs on each device of the `device` fixture (tests/ops/conftest.py): inputs and references on
the CPU, the op on the device.

Glossary: B batch, D channels, L steps, N state size, G groups, H heads, P channels per head, S cache rows.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import torch
from scan_cases import (
    check_against_reference,
    dict_to_device,
    make_inputs,
    rel_l2,
    skip_float64_on_cuda,
    to_device,
    tolerance,
)

import hamburg_mamba.ops.selective_scan as front
from hamburg_mamba import selective_scan_fn, selective_scan_ref, selective_state_update, selective_state_update_ref

# ------------------------------------------------------------------------------------------------------------
# selective_scan_fn with (D, N) B and C


def constant_bc(args, which, seed=3):
    """Replaces B and/or C of `args` by (D, N) matrices (float32 params, float64 with float64 inputs)."""
    g = torch.Generator().manual_seed(seed)
    dim, dstate = args["A"].shape
    for name in which:
        args[name] = torch.randn(dim, dstate, generator=g, dtype=torch.float64).to(args["A"].dtype)
    return args


def mamba_ssm_formula(u, delta, A, B, C):
    """mamba_ssm's selective_scan_ref written out for (D, N) B and C, float64, no options: deltaB_u is
    einsum('bdl,dn,bdl->bdln'), y_t = einsum('bdn,dn->bd', x_t, C)."""
    x = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for t in range(u.shape[2]):
        x = torch.exp(delta[:, :, t, None] * A) * x + delta[:, :, t, None] * B * u[:, :, t, None]
        ys.append(torch.einsum("bdn,dn->bd", x, C))
    return torch.stack(ys, dim=2)


def test_reference_reads_a_constant_b_per_channel_as_mamba_ssm():
    args = constant_bc(make_inputs(batch=2, dim=6, seqlen=9, dstate=4, optional=(), softplus=False), "BC")
    want = mamba_ssm_formula(args["u"], args["delta"], args["A"], args["B"], args["C"])
    got = selective_scan_ref(args["u"], args["delta"], args["A"], args["B"], args["C"])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("which,groups", [("BC", None), ("B", None), ("C", 2), ("B", 4)])
def test_constant_b_or_c_matches_the_reference_with_gradients(dtype, which, groups, device):
    skip_float64_on_cuda(dtype, device)
    args = make_inputs(batch=3, dim=8, seqlen=70, dstate=5, groups=groups, dtype=dtype, seed=4)
    args = constant_bc(args, which)
    for v in args.values():
        if v.dtype.is_floating_point:
            v.requires_grad_(True)
    args["dt_scale"].requires_grad_(False)
    check_against_reference(args, device=device)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_float32_constant_b_c_is_not_rounded_to_half_precision_inputs(dtype, device):
    # mamba_ssm keeps an input-independent (D, N) B or C in float32 with half-precision u. The float32 last state
    # shows it: against the float64 reference of the same inputs its error is float32 roundoff (~3e-7 measured);
    # with B and C rounded to u's dtype it would be that dtype's roundoff (2e-3 bfloat16, 2e-4 float16).
    g = torch.Generator().manual_seed(5)
    batch, dim, seqlen, dstate = 2, 16, 200, 8
    u = torch.randn(batch, dim, seqlen, generator=g).to(dtype)
    delta = (0.5 * torch.rand(batch, dim, seqlen, generator=g)).to(dtype)
    A = -0.5 * torch.rand(dim, dstate, generator=g)
    B, C = torch.randn(dim, dstate, generator=g), torch.randn(dim, dstate, generator=g)
    out, state = selective_scan_fn(*(t.to(device) for t in (u, delta, A, B, C)), return_last_state=True)
    _, want = selective_scan_ref(u.double(), delta.double(), A.double(), B.double(), C.double(), return_last_state=True)
    assert out.dtype == dtype and state.dtype == torch.float32
    assert rel_l2(state.cpu(), want) < 1e-5


def test_constant_b_enters_the_kernel_unexpanded_over_batch(monkeypatch):
    # The (D, N) matrix is materialised over L once, not per batch row: a stride-0 batch axis in the op.
    args = constant_bc(make_inputs(batch=2, dim=8, seqlen=70, dstate=5, dtype=torch.float32), "BC")
    seen = {}
    real = torch.ops.hamburg_mamba.selective_scan_fwd

    def spy(*op_args):
        seen["B"] = op_args[3]
        return real(*op_args)

    monkeypatch.setattr(front, "_ops", SimpleNamespace(selective_scan_fwd=spy))
    selective_scan_fn(**args)
    assert seen["B"].shape == (2, 8, 5, 70) and seen["B"].stride(0) == 0


def test_opcheck_with_a_broadcast_constant_b(device):
    args = constant_bc(make_inputs(batch=2, dim=8, seqlen=70, dstate=5, dtype=torch.float32), "B")
    args = dict_to_device(args, device)
    B = args["B"][:, :, None].expand(8, 5, 70).contiguous()[None].expand(2, 8, 5, 70)  # (B, D, N, L)
    C = args["C"].repeat_interleave(4, dim=1)  # (B, D, N, L)
    op_args = (
        args["u"],
        args["delta"],
        args["A"],
        B,
        C,
        args["D"],
        args["z"],
        args["delta_bias"],
        args["initial_state"],
        args["dt_scale"],
        True,
        True,
    )
    torch.library.opcheck(torch.ops.hamburg_mamba.selective_scan_fwd, op_args)


def test_constant_b_of_wrong_shape_names_the_argument():
    args = make_inputs(batch=2, dim=8, seqlen=5, dstate=5, dtype=torch.float32)
    args["C"] = torch.randn(8, 4)
    with pytest.raises(ValueError, match="argument 'C' must have shape .*\\(D, N\\) = \\(8, 5\\)"):
        selective_scan_fn(**args)


@pytest.mark.parametrize("name", ["A", "B", "C"])
def test_complex_parameters_are_refused(name):
    args = constant_bc(make_inputs(batch=1, dim=4, seqlen=5, dstate=3, dtype=torch.float32, optional=()), "BC")
    args[name] = args[name].to(torch.complex64)
    with pytest.raises(ValueError, match="complex A .* is not supported"):
        selective_scan_fn(**args)
    with pytest.raises(ValueError, match="complex A .* is not supported"):
        selective_scan_ref(**args)


# ------------------------------------------------------------------------------------------------------------
# selective_state_update with mamba_ssm's signature

STATE_TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}


def step_args(
    batch=3,
    heads=4,
    per_head=5,
    dstate=6,
    groups=1,
    with_heads=True,
    x_dtype=torch.float32,
    bc_dtype=torch.float32,
    optional=True,
    seed=0,
):
    """Keyword arguments of one step (no state), in mamba_ssm's layouts with or without a heads axis."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0, dtype=torch.float32):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)

    lead = (heads, per_head) if with_heads else (heads * per_head,)
    args = dict(
        x=rnd(batch, *lead, dtype=x_dtype),
        dt=rnd(batch, *lead, scale=0.5, dtype=x_dtype) - 1.0,
        A=-torch.rand(*lead, dstate, generator=g) * 2 - 0.1,
        B=rnd(batch, groups, dstate, dtype=bc_dtype),
        C=rnd(batch, groups, dstate, dtype=bc_dtype),
        dt_softplus=optional,
    )
    if optional:
        args.update(
            D=rnd(*lead),
            z=rnd(batch, *lead, dtype=x_dtype),
            dt_bias=rnd(*lead, scale=0.2),
            dt_scale=torch.rand(batch, generator=g) * 2,
        )
    return args


def as_float64(args):
    return {k: v.double() if isinstance(v, torch.Tensor) and v.dtype.is_floating_point else v for k, v in args.items()}


def check_step(state, args, state_batch_indices=None, device="cpu"):
    """Runs one step on `state` (a copy of it on `device`, in the same layout, when that is not the CPU) and on a
    float64 copy through the reference; compares outputs and states on the CPU."""
    before = state.clone()
    ref_state = state.double()
    want = selective_state_update_ref(ref_state, **as_float64(args), state_batch_indices=state_batch_indices)
    on_device = to_device(state, device)
    with torch.no_grad():
        got = selective_state_update(
            on_device, **dict_to_device(args, device), state_batch_indices=to_device(state_batch_indices, device)
        )
    got, state = got.cpu(), on_device.cpu()
    assert got.dtype == args["x"].dtype and got.shape == args["x"].shape
    tol = max(tolerance(args["x"].dtype, device)[0], STATE_TOLERANCE[state.dtype])
    assert rel_l2(got, want) < tol, f"out: {rel_l2(got, want):.2e}"
    rows = torch.arange(state.shape[0]) if state_batch_indices is None else state_batch_indices
    assert rel_l2(state[rows], ref_state[rows]) < STATE_TOLERANCE[state.dtype]
    untouched = torch.ones(state.shape[0], dtype=torch.bool)
    untouched[rows] = False
    assert torch.equal(state[untouched], before[untouched])


GRID = list(
    itertools.product(
        [True, False],  # heads axis
        [1, 2],  # groups
        [False, True],  # state_batch_indices into a larger cache
        [torch.float32, torch.float16, torch.bfloat16],  # state dtype
        [(torch.float32, torch.float32), (torch.bfloat16, torch.float32), (torch.float16, torch.float16)],  # x, B/C
        [True, False],  # D, z, dt_bias, dt_scale and softplus
    )
)


@pytest.mark.parametrize("with_heads,groups,indexed,state_dtype,dtypes,optional", GRID)
def test_state_update_matches_the_reference(with_heads, groups, indexed, state_dtype, dtypes, optional, device):
    batch, heads, per_head, dstate = 3, 4, 5, 6
    args = step_args(batch, heads, per_head, dstate, groups, with_heads, *dtypes, optional=optional)
    rows = 7 if indexed else batch
    lead = (heads, per_head) if with_heads else (heads * per_head,)
    state = torch.randn(rows, *lead, dstate).to(state_dtype)
    indices = torch.tensor([5, 0, 3]) if indexed else None
    check_step(state, args, indices, device)


def test_state_update_ref_is_one_step_of_the_scan_reference():
    # An independent spec for the heads layout: flattened to channels h * P + p, one step of selective_scan_ref
    # with G groups over the D = H * P channels and initial_state = state.
    batch, heads, per_head, dstate, groups = 2, 4, 3, 5, 2
    args = as_float64(step_args(batch, heads, per_head, dstate, groups))
    state = torch.randn(batch, heads, per_head, dstate, dtype=torch.float64)
    dim = heads * per_head

    def flat(t):
        return t.reshape(*t.shape[:-2], dim)

    out, last = selective_scan_ref(
        flat(args["x"])[..., None],
        flat(args["dt"])[..., None],
        args["A"].reshape(dim, dstate),
        args["B"][..., None],
        args["C"][..., None],
        D=flat(args["D"]),
        z=flat(args["z"])[..., None],
        delta_bias=flat(args["dt_bias"]),
        delta_softplus=True,
        return_last_state=True,
        initial_state=state.reshape(batch, dim, dstate),
        dt_scale=args["dt_scale"][:, None],
    )
    got = selective_state_update_ref(state, **args)
    torch.testing.assert_close(got.reshape(batch, dim), out[..., 0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(state.reshape(batch, dim, dstate), last, rtol=1e-12, atol=1e-12)


def test_scalar_per_head_a_and_dt_broadcast_as_mamba2(device):
    # Mamba-2 passes A, dt, dt_bias, D as one value per head broadcast with stride 0 over P (and N).
    batch, heads, per_head, dstate = 2, 3, 4, 8
    g = torch.Generator().manual_seed(1)
    A = (-torch.rand(heads, generator=g) - 0.5)[:, None, None].expand(heads, per_head, dstate)
    dt = torch.randn(batch, heads, generator=g)[..., None].expand(batch, heads, per_head)
    dt_bias = torch.randn(heads, generator=g)[:, None].expand(heads, per_head)
    D = torch.randn(heads, generator=g)[:, None].expand(heads, per_head)
    args = dict(
        x=torch.randn(batch, heads, per_head, generator=g),
        dt=dt,
        A=A,
        B=torch.randn(batch, 1, dstate, generator=g),
        C=torch.randn(batch, 1, dstate, generator=g),
        D=D,
        dt_bias=dt_bias,
        dt_softplus=True,
    )
    check_step(torch.randn(batch, heads, per_head, dstate, generator=g), args, device=device)


def test_b_and_c_without_a_groups_axis_serve_every_head(device):
    args = step_args(batch=2, groups=1)
    args["B"], args["C"] = args["B"][:, 0], args["C"][:, 0]  # (B, N)
    check_step(torch.randn(2, 4, 5, 6), args, device=device)


def test_positional_arguments_follow_mamba_ssm(device):
    # mamba_ssm: (state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, state_batch_indices); dt_scale after.
    args = step_args(batch=2, optional=True)
    state = torch.randn(4, 4, 5, 6)
    ref_state = state.double()
    indices = torch.tensor([3, 1])
    want = selective_state_update_ref(ref_state, **as_float64(args), state_batch_indices=indices)
    state, args, indices = state.to(device), dict_to_device(args, device), indices.to(device)
    with torch.no_grad():
        got = selective_state_update(
            state,
            args["x"],
            args["dt"],
            args["A"],
            args["B"],
            args["C"],
            args["D"],
            args["z"],
            args["dt_bias"],
            True,
            indices,
            args["dt_scale"],
        )
    assert rel_l2(got.cpu(), want) < 1e-5 and rel_l2(state.cpu(), ref_state) < 1e-5


def test_a_state_whose_heads_do_not_merge_is_updated_in_place(device):
    args = step_args(batch=2)
    state = torch.randn(2, 5, 4, 6).transpose(1, 2)  # (B, H, P, N) with H, P not mergeable into one axis
    check_step(state, args, device=device)


def test_negative_index_is_a_padding_slot(device):
    args = step_args(batch=3)
    before = torch.randn(5, 4, 5, 6)
    state = before.clone().to(device)
    indices = torch.tensor([4, -1, 0])
    with torch.no_grad():
        out = selective_state_update(state, **dict_to_device(args, device), state_batch_indices=indices.to(device))
    out, state = out.cpu(), state.cpu()
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    assert torch.equal(state[[1, 2, 3]], before[[1, 2, 3]])
    want = before.double()
    selective_state_update_ref(want, **as_float64(args), state_batch_indices=indices)  # skips the slot in the same way
    assert rel_l2(state, want) < STATE_TOLERANCE[torch.float32]
    check_step(before, args, indices, device)


@pytest.mark.parametrize(
    "indices,error,match",
    [
        (torch.tensor([0, 7, 1]), ValueError, "must be < S = 5"),
        (torch.tensor([2, 1, 2]), ValueError, "must not repeat a row"),
        (torch.tensor([0.0, 1.0, 2.0]), TypeError, "must be an integer tensor"),
        (torch.tensor([0, 1]), ValueError, r"must have shape \(B,\) = \(3,\)"),
    ],
)
def test_bad_state_batch_indices_are_named(indices, error, match):
    state = torch.randn(5, 4, 5, 6)
    before = state.clone()
    with torch.no_grad(), pytest.raises(error, match=f"'state_batch_indices' {match}"):
        selective_state_update(state, **step_args(batch=3), state_batch_indices=indices)
    assert torch.equal(state, before)


def test_heads_shape_mismatch_is_named():
    args = step_args(batch=2)
    args["dt_bias"] = args["dt_bias"][:, :3]
    with torch.no_grad(), pytest.raises(ValueError, match=r"argument 'dt_bias' must have shape \(4, 5\)"):
        selective_state_update(torch.randn(2, 4, 5, 6), **args)
    args = step_args(batch=2, groups=3)
    with torch.no_grad(), pytest.raises(ValueError, match="argument 'B' .* G dividing H = 4"):
        selective_state_update(torch.randn(2, 4, 5, 6), **args)


def test_complex_a_is_refused_by_the_state_update():
    args = step_args(batch=2)
    args["A"] = args["A"].to(torch.complex64)
    with torch.no_grad(), pytest.raises(ValueError, match="complex A .* is not supported"):
        selective_state_update(torch.randn(2, 4, 5, 6), **args)


def test_channel_layout_without_heads_is_one_step_of_the_scan(device):
    # The op's own layout (no heads, channel groups of 2 channels), against the formula written out.
    args = step_args(batch=2, heads=6, per_head=1, dstate=4, groups=3, with_heads=False, optional=False)
    state = torch.randn(2, 6, 4)
    ref = state.double()
    x, dt, A = (args[k].double() for k in ("x", "dt", "A"))
    Bc = args["B"].double().repeat_interleave(2, dim=1)  # (B, D, N)
    Cc = args["C"].double().repeat_interleave(2, dim=1)  # (B, D, N)
    new = torch.exp(dt[..., None] * A) * ref + dt[..., None] * Bc * x[..., None]
    want = (new * Cc).sum(-1)
    on_device = state.to(device)
    with torch.no_grad():
        got = selective_state_update(on_device, **dict_to_device(args, device))
    assert rel_l2(got.cpu(), want) < 1e-5 and rel_l2(on_device.cpu(), new) < 1e-5
