"""The step size softplus(delta + delta_bias) across every branch (far below, around and above torch's
threshold 20) and with NaN / +-inf, in every CPU kernel (forward, backward, state update, fused block step),
against the float64 references, at every ISA level.

Glossary: B batch, D channels, L steps, N state size, G groups; M d_model, E d_inner.

Channels carry one pre-activation value each, so errors are measured per channel: one channel with steps of
40 would otherwise hide a wrong small step in another. NaN in must give NaN exactly where the reference gives
NaN (softplus(NaN) = NaN, as torch.nn.functional.softplus), +-inf what the reference gives.
"""

from __future__ import annotations

import math

import pytest
import torch
from scan_cases import GRAD_NAMES, LOWER_ISA_LEVELS, as_float64, block_step_args, make_inputs, run_under_isa

from hamburg_mamba.ops import (
    mamba_block_step,
    mamba_block_step_ref,
    selective_scan_fn,
    selective_scan_ref,
    selective_state_update,
    selective_state_update_ref,
)
from hamburg_mamba.ops.reference import SOFTPLUS_THRESHOLD

# delta + delta_bias per channel: the exp-underflow region, the log1p(exp) branch, both sides of the
# threshold within float32 resolution, and the identity branch.
PRE_STEPS = (
    -1000.0,
    -100.0,
    -30.0,
    -5.0,
    0.0,
    5.0,
    SOFTPLUS_THRESHOLD - 1e-3,
    SOFTPLUS_THRESHOLD,
    SOFTPLUS_THRESHOLD + 1e-3,
    25.0,
    40.0,
)
DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)

# Largest per-channel relative L2 error allowed against the float64 reference (outputs, gradients). Measured
# at the AVX-512, AVX2 and baseline levels on these inputs, at most (outputs / gradients): float64 2.6e-15 /
# 2.4e-14; float32 1.1e-6 / 6.6e-6 (ddelta_bias, a sum over B and L with cancellation); float16 4.2e-4 /
# 2.8e-4 and bfloat16 2.9e-3 / 2.9e-3, the rounding of the stored half outputs (unit roundoff 2^-11, 2^-8).
# Each bound is 2.5x or more the measurement and below 1 %, so a 1 % error in any channel fails.
TOLERANCE = {
    torch.float64: (1e-12, 1e-12),
    torch.float32: (1e-5, 2e-5),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (8e-3, 8e-3),
}


def channel_error(got: torch.Tensor, want: torch.Tensor, axis: int | None) -> float:
    """Largest relative L2 error over the slices along `axis` (the whole tensor when None). Slices whose
    reference norm is below `underflow_floor` compare absolutely against it."""
    floor = underflow_floor(got.dtype)
    got, want = got.detach().double(), want.detach().double()
    if axis is None:
        got, want = got.reshape(1, -1), want.reshape(1, -1)
    else:
        got, want = (
            got.movedim(axis, 0).reshape(got.shape[axis], -1),
            want.movedim(axis, 0).reshape(want.shape[axis], -1),
        )
    return ((got - want).norm(dim=1) / want.norm(dim=1).clamp_min(floor * math.sqrt(got.shape[1]))).max().item()


def underflow_floor(dtype: torch.dtype) -> float:
    """Per-element magnitude below which values compare absolutely. The float32 kernels flush exp(x) to 0 for
    x < -88 (results under 2^-126), so softplus(-100) = 3.7e-44 and the gradients it scales (about 1e-41 here)
    come out as 0: tiny / eps puts such values 2^23 below the normal range, far under any real signal. Half
    types keep their subnormals, so their floor is the normal range's bottom."""
    info = torch.finfo(dtype)
    return info.tiny / info.eps if dtype in (torch.float32, torch.float64) else info.tiny


def assert_same_nonfinite(got: torch.Tensor, want: torch.Tensor, what: str, exact: bool = True) -> None:
    """exact: NaN exactly where the reference has NaN, the same signed infinities. Otherwise non-finite exactly
    where the reference is (for gradients: with an infinite step the kernels factor it out of sums over the
    state, s * sum_n G_n B_n, where the reference sums s G_n B_n and meets inf - inf = NaN, so NaN and inf may
    trade places)."""
    got, want = got.detach().double(), want.detach().double()
    assert torch.equal(got.isfinite(), want.isfinite()), (
        f"{what}: non-finite at {(~got.isfinite()).sum()} places, reference at {(~want.isfinite()).sum()}"
    )
    if exact:
        assert torch.equal(got.isnan(), want.isnan()), (
            f"{what}: NaN at {got.isnan().sum()} places, reference at {want.isnan().sum()}"
        )
        assert torch.equal(got == math.inf, want == math.inf), f"{what}: +inf differs"


def finite_error(got: torch.Tensor, want: torch.Tensor, axis: int | None) -> float:
    """channel_error over the channels (along `axis`) whose reference is finite throughout; over the finite
    elements when axis is None. 0 when nothing is finite."""
    if axis is None:
        keep = want.isfinite()
        return channel_error(got[keep], want[keep], None) if keep.any() else 0.0
    keep = want.isfinite().movedim(axis, 0).reshape(want.shape[axis], -1).all(1)  # (channels,)
    if not keep.any():
        return 0.0
    return channel_error(got.movedim(axis, 0)[keep], want.movedim(axis, 0)[keep], 0)


def check_close(
    got: torch.Tensor, want: torch.Tensor, axis: int | None, tol: float, what: str, exact: bool = True
) -> None:
    assert_same_nonfinite(got, want, what, exact)
    err = finite_error(got, want, axis)
    assert err < tol, f"{what}: {err:.2e}"


# Axis of the channel dimension in each gradient (None: shared by channels, compared whole).
GRAD_CHANNEL_AXIS = {
    "u": 1,
    "delta": 1,
    "z": 1,
    "A": 0,
    "D": 0,
    "delta_bias": 0,
    "initial_state": 1,
    "B": None,
    "C": None,
}


def scan_with_pre_steps(dtype: torch.dtype) -> dict:
    """Inputs with D = 2 * len(PRE_STEPS) channels: channel i carries PRE_STEPS[i] in delta_bias (delta 0, exact
    in every dtype), channel len(PRE_STEPS) + i in delta (rounded to the dtype, bias 0)."""
    k = len(PRE_STEPS)
    args = make_inputs(batch=2, dim=2 * k, seqlen=70, dstate=8, groups=2, dtype=dtype)
    values = torch.tensor(PRE_STEPS, dtype=torch.float64)
    pdt = args["A"].dtype
    args["delta_bias"] = torch.cat([values, torch.zeros(k, dtype=torch.float64)]).to(pdt)
    delta = torch.zeros_like(args["delta"], dtype=torch.float64)  # (B, D, L)
    delta[:, k:, :] = values[None, :, None]
    args["delta"] = delta.to(dtype)
    for name in GRAD_NAMES:
        args[name].requires_grad_(True)
    return args


def scan_and_grads(fn, args: dict, dout: torch.Tensor, dlast: torch.Tensor):
    out, last = fn(**args, delta_softplus=True, return_last_state=True)
    loss = (out.double() * dout).sum() + (last.double() * dlast).sum()
    grads = torch.autograd.grad(loss, [args[k] for k in GRAD_NAMES])
    return out, last, dict(zip(GRAD_NAMES, grads, strict=True))


def compare_scan(args: dict) -> None:
    """Forward and every gradient of the op against the float64 reference on the same (rounded) inputs."""
    dtype = args["u"].dtype
    tol_out, tol_grad = TOLERANCE[dtype]
    g = torch.Generator().manual_seed(1)
    # dout exact in the dtype (autograd hands the kernel dout in the dtype of out), so the errors are the kernels'.
    dout = torch.randn(args["u"].shape, generator=g, dtype=torch.float64).to(dtype).double()
    dlast = torch.randn(*args["initial_state"].shape, generator=g, dtype=torch.float64)
    out, last, grads = scan_and_grads(selective_scan_fn, args, dout, dlast)
    rout, rlast, rgrads = scan_and_grads(selective_scan_ref, as_float64(args), dout, dlast)
    check_close(out, rout, 1, tol_out, f"{dtype} scan out")
    check_close(last, rlast, 1, tol_out, f"{dtype} scan last_state")
    for name in GRAD_NAMES:
        check_close(grads[name], rgrads[name], GRAD_CHANNEL_AXIS[name], tol_grad, f"{dtype} scan d{name}", exact=False)


def check_scan_across_softplus_branches():
    for dtype in DTYPES:
        compare_scan(scan_with_pre_steps(dtype))


def check_scan_nan_and_inf_steps():
    """NaN, +inf and -inf in delta (one step each, in different channels and in the bias of one channel)."""
    for dtype in DTYPES:
        args = make_inputs(batch=2, dim=20, seqlen=70, dstate=8, groups=2, dtype=dtype, requires_grad=True)
        with torch.no_grad():
            args["delta"][0, 1, 5] = math.nan
            args["delta"][0, 2, 66] = math.inf  # in the second checkpoint chunk
            args["delta"][1, 3, 9] = -math.inf
            args["delta_bias"][17] = math.nan
        compare_scan(args)


def step_inputs(dtype: torch.dtype, pre_steps) -> dict:
    """One streaming step in which channel i has dt + dt_bias = pre_steps[i]: all of it in dt_bias in batch row
    0 (dt 0), half of it in dt in row 1 (non-finite values in dt_bias only)."""
    dim = len(pre_steps)
    args = make_inputs(batch=2, dim=dim, seqlen=1, dstate=17, groups=None, dtype=dtype)
    values = torch.tensor(pre_steps, dtype=torch.float64)
    pdt = args["A"].dtype
    bias = torch.where(values.isfinite(), values / 2, values).to(pdt)
    dt = torch.stack([torch.zeros(dim, dtype=torch.float64), values - bias.double()])  # (B, D)
    dt = torch.where(values.isfinite(), dt, torch.zeros_like(dt))
    return dict(
        state=args["initial_state"],
        x=args["u"][..., 0],
        dt=dt.to(dtype),
        A=args["A"],
        B=args["B"][..., 0],
        C=args["C"][..., 0],
        D=args["D"],
        z=args["z"][..., 0],
        dt_bias=bias,
        dt_scale=args["dt_scale"][:, 0],
    )


def compare_state_update(args: dict) -> None:
    dtype = args["x"].dtype
    tol = TOLERANCE[dtype][0]
    ref = {k: v.double() for k, v in args.items()}
    ref["state"] = ref["state"].clone()
    state = args["state"].clone()
    with torch.no_grad():
        for _ in range(3):  # a state built from edge steps is carried into the next ones
            out = selective_state_update(state, **{k: v for k, v in args.items() if k != "state"}, dt_softplus=True)
            rout = selective_state_update_ref(
                ref["state"], **{k: v for k, v in ref.items() if k != "state"}, dt_softplus=True
            )
            check_close(out, rout, 1, tol, f"{dtype} state_update out")
            check_close(state, ref["state"], 1, tol, f"{dtype} state_update state")


def check_state_update_across_softplus_branches():
    for dtype in DTYPES:
        compare_state_update(step_inputs(dtype, PRE_STEPS))


def check_state_update_nan_and_inf_steps():
    for dtype in DTYPES:
        compare_state_update(step_inputs(dtype, (-2.0, math.nan, 1.0, math.inf, -math.inf, 0.5, 30.0)))


def compare_block_step(dtype: torch.dtype, dt_proj_bias: torch.Tensor) -> None:
    """The fused op against mamba_block_step_ref in float64, dt_proj_weight 0 so that each channel's step is
    softplus(dt_proj_bias) exactly."""
    args = block_step_args(d_inner=dt_proj_bias.numel())
    args["dt_proj_weight"] = torch.zeros_like(args["dt_proj_weight"])
    args["dt_proj_bias"] = dt_proj_bias.float()
    args = {k: (v.to(dtype) if isinstance(v, torch.Tensor) else v) for k, v in args.items()}
    ref = {k: (v.double().clone() if isinstance(v, torch.Tensor) else v) for k, v in args.items()}
    tol = TOLERANCE[dtype][0]
    for _ in range(2):
        out = mamba_block_step(**args)
        rout = mamba_block_step_ref(**ref)
        check_close(out, rout, None, tol, f"{dtype} block_step out")  # out_proj mixes the channels
        check_close(args["ssm_state"], ref["ssm_state"], 1, tol, f"{dtype} block_step ssm_state")
        check_close(args["conv_state"], ref["conv_state"], 1, tol, f"{dtype} block_step conv_state")


def check_block_step_across_softplus_branches():
    bias = torch.tensor(PRE_STEPS * 2, dtype=torch.float64)  # E = 22: a block of 16 channels and a tail
    for dtype in (torch.float64, torch.float32):
        compare_block_step(dtype, bias)


def check_block_step_nan_and_inf_steps():
    for dtype in (torch.float64, torch.float32):
        for bad in (math.nan, math.inf, -math.inf):
            bias = torch.full((20,), -2.0, dtype=torch.float64)
            bias[7] = bad
            compare_block_step(dtype, bias)


CHECKS = [
    check_scan_across_softplus_branches,
    check_scan_nan_and_inf_steps,
    check_state_update_across_softplus_branches,
    check_state_update_nan_and_inf_steps,
    check_block_step_across_softplus_branches,
    check_block_step_nan_and_inf_steps,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_best_isa_level(check):
    check()


@pytest.mark.parametrize("isa", LOWER_ISA_LEVELS)
def test_lower_isa_levels(isa):
    run_under_isa(isa, __file__, [c.__name__ for c in CHECKS])
