"""CUDA kernels of the selective-scan ops against the float64 reference (hamburg_mamba.ops.reference).

Glossary: B batch, D channels, L steps, N state size, G groups sharing (B, C).

Every test skips without a CUDA device (or without the compiled CUDA kernels). References run on the CPU in
float64 on the same (rounded) inputs, so the tolerances measure the kernels' float32 arithmetic and the
rounding of their input-dtype outputs only.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from hamburg_mamba.ops import CHECKPOINT_INTERVAL, selective_scan_fn, selective_scan_ref, selective_state_update

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

_ops = torch.ops.hamburg_mamba

# Relative L2 tolerances (||got - want|| / ||want||) per input dtype: float32 as the project targets them; half
# types are bounded by rounding the inputs' dtype outputs (du, ddelta, dz, out): 2^-11 and 2^-8 per element.
TOLERANCES = {
    torch.float32: {"out": 1e-5, "grad": 1e-4},
    torch.float16: {"out": 2e-3, "grad": 3e-3},
    torch.bfloat16: {"out": 1e-2, "grad": 2e-2},
}
# Step counts: tiny, one checkpoint interval, the short kernel's chunk (512) minus one, just past the long
# kernel's chunk (2048), and several long chunks (> 4096, where a coarse exp would show).
SEQLENS = [1, 2, 7, 64, 255, 2049, 4500]
STATE_SIZES = [1, 16, 64, 256]
GRAD_NAMES = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state"]


def _has_cuda_kernels() -> bool:
    if not torch.cuda.is_available():
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key("hamburg_mamba::selective_scan_fwd", "CUDA")


@pytest.fixture(autouse=True)
def _require_cuda_kernels():
    if not _has_cuda_kernels():
        pytest.skip("hamburg_mamba was built without CUDA kernels (HAMBURG_MAMBA_CUDA=0 or no nvcc)")


def rel_l2(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    return ((got - want).norm() / want.norm().clamp_min(1e-30)).item()


def make_inputs(
    batch,
    dim,
    seqlen,
    dstate,
    groups,
    dtype,
    *,
    D=True,
    z=True,
    delta_bias=True,
    initial_state=True,
    dt_scale=True,
    delta_softplus=True,
    seed=0,
):
    """Random inputs on the CPU in `dtype` (parameters float32); groups=0 means B, C of shape (B, N, L)."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0):
        return torch.randn(*shape, generator=g) * scale

    bc_shape = (batch, dstate, seqlen) if groups == 0 else (batch, groups, dstate, seqlen)
    if delta_softplus:
        delta = randn(batch, dim, seqlen, scale=0.5) - 1.0  # (B, D, L), softplus -> steps around 0.3
    else:
        delta = randn(batch, dim, seqlen).abs() * 0.1 + 0.01
    args = {
        "u": randn(batch, dim, seqlen).to(dtype),  # (B, D, L)
        "delta": delta.to(dtype),
        "A": -(torch.rand(dim, dstate, generator=g) * 2 + 0.1),  # (D, N), negative
        "B": randn(*bc_shape).to(dtype),
        "C": randn(*bc_shape).to(dtype),
        "D": randn(dim) if D else None,
        "z": randn(batch, dim, seqlen).to(dtype) if z else None,
        # Non-negative, so that steps stay positive without softplus (a negative step makes the state grow).
        "delta_bias": torch.rand(dim, generator=g) * 0.3 if delta_bias else None,
        "initial_state": randn(batch, dim, dstate) if initial_state else None,
        "dt_scale": torch.rand(batch, seqlen, generator=g) * 2 if dt_scale else None,  # (B, L), elapsed time
        "delta_softplus": delta_softplus,
    }
    return args


def to_device(args: dict, device, requires_grad=False) -> dict:
    out = {}
    for k, v in args.items():
        if isinstance(v, torch.Tensor):
            v = v.detach().to(device)
            if requires_grad and k in GRAD_NAMES:
                v.requires_grad_(True)
        out[k] = v
    return out


def run_scan(fn, args: dict, dout: torch.Tensor, dlast: torch.Tensor | None):
    """out, last_state and the gradients of <out, dout> + <last_state, dlast> w.r.t. every tensor input."""
    out, last = fn(
        args["u"],
        args["delta"],
        args["A"],
        args["B"],
        args["C"],
        D=args["D"],
        z=args["z"],
        delta_bias=args["delta_bias"],
        delta_softplus=args["delta_softplus"],
        return_last_state=True,
        initial_state=args["initial_state"],
        dt_scale=args["dt_scale"],
    )
    loss = (out.to(torch.float64) * dout.to(out.device, torch.float64)).sum()
    if dlast is not None:
        loss = loss + (last.to(torch.float64) * dlast.to(last.device, torch.float64)).sum()
    names = [k for k in GRAD_NAMES if args[k] is not None]
    grads = torch.autograd.grad(loss, [args[k] for k in names])
    return out, last, dict(zip(names, grads, strict=True))


def compare_with_reference(args: dict, dtype, *, with_dlast=True, tol=None):
    tol = tol or TOLERANCES[dtype]
    g = torch.Generator().manual_seed(1)
    batch, dim, _ = args["u"].shape
    dout = torch.randn(args["u"].shape, generator=g).to(dtype)
    dlast = torch.randn(batch, dim, args["A"].shape[1], generator=g) if with_dlast else None

    ref = {k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in args.items()}
    want_out, want_last, want_grads = run_scan(selective_scan_ref, to_device(ref, "cpu", True), dout, dlast)
    got_out, got_last, got_grads = run_scan(selective_scan_fn, to_device(args, "cuda", True), dout, dlast)

    assert got_out.dtype == dtype and got_out.is_cuda
    assert got_last.dtype == torch.float32
    errors = {"out": rel_l2(got_out, want_out), "last_state": rel_l2(got_last, want_last)}
    for k, want in want_grads.items():
        assert got_grads[k].shape == args[k].shape and got_grads[k].dtype == args[k].dtype, k
        errors["d" + k] = rel_l2(got_grads[k], want)
    # `not v <= tol` also catches NaN.
    bad = {k: v for k, v in errors.items() if not v <= (tol["out"] if k in ("out", "last_state") else tol["grad"])}
    assert not bad, f"relative L2 errors above tolerance {tol}: {bad} (all: {errors})"


@pytest.mark.parametrize("seqlen", SEQLENS)
@pytest.mark.parametrize("dstate", STATE_SIZES)
def test_float32_matches_reference(seqlen, dstate):
    # Every optional argument on, grouped B/C: the widest code path.
    args = make_inputs(2, 4, seqlen, dstate, 2, torch.float32, seed=seqlen * 1000 + dstate)
    compare_with_reference(args, torch.float32)


OPTIONAL = ["D", "z", "delta_bias", "initial_state", "dt_scale", "delta_softplus"]


@pytest.mark.parametrize("seqlen", [37, 700])  # the short (K = 4) and the long (K = 16) kernel
@pytest.mark.parametrize("off", [None, "all", *OPTIONAL, "dlast", "ungrouped"])
def test_each_optional_argument(seqlen, off):
    flags = dict.fromkeys(OPTIONAL, off != "all")
    if off in flags:
        flags[off] = False
    groups = 0 if off in ("ungrouped", "all") else 3
    args = make_inputs(2, 6, seqlen, 8, groups, torch.float32, seed=len(str(off)), **flags)
    compare_with_reference(args, torch.float32, with_dlast=off not in ("dlast", "all"))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("seqlen", [7, 255, 2049])
def test_half_dtypes_match_reference(dtype, seqlen):
    args = make_inputs(2, 4, seqlen, 16, 2, dtype, seed=seqlen)
    compare_with_reference(args, dtype)


@pytest.mark.parametrize("seqlen", [1, 63, 64, 65, 511, 513, 4500])
def test_checkpoints_match_cpu(seqlen):
    # Same tensor meaning on both devices: entry k is the state before step 64 k (the CPU kernel is tested
    # against the reference on its own).
    args = make_inputs(2, 3, seqlen, 16, 0, torch.float32, seed=seqlen)
    positional = [args[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state", "dt_scale")]
    cpu = _ops.selective_scan_fwd(*positional, True, True)
    gpu = _ops.selective_scan_fwd(*[None if t is None else t.cuda() for t in positional], True, True)
    n_chunks = -(-seqlen // CHECKPOINT_INTERVAL)
    assert gpu[2].shape == (2, 3, n_chunks, 16) and gpu[2].dtype == torch.float32
    torch.testing.assert_close(gpu[2][:, :, 0].cpu(), args["initial_state"], rtol=0, atol=0)
    assert rel_l2(gpu[2], cpu[2]) < 1e-5
    assert rel_l2(gpu[1], cpu[1]) < 1e-5
    # Without save_checkpoints the tensor is empty.
    assert _ops.selective_scan_fwd(*[None if t is None else t.cuda() for t in positional], True, False)[2].numel() == 0


@pytest.mark.parametrize("seqlen,pad", [(300, 100), (1000, 300), (2300, 400), (4500, 2400)])
def test_padded_steps_are_exact_no_ops(seqlen, pad):
    # Right-padded batch (dt_scale 0 on the last `pad` steps, zero gradient there) vs the unpadded prefix.
    # Both lengths use the same kernel configuration, and identity steps compose exactly, so the results
    # are bitwise equal wherever no atomic summation order is involved.
    args = make_inputs(2, 4, seqlen, 16, 2, torch.float32, seed=pad)
    args["dt_scale"][:, seqlen - pad :] = 0
    valid = seqlen - pad
    short = {
        k: (v[..., :valid].contiguous() if k in ("u", "delta", "z", "B", "C", "dt_scale") else v)
        for k, v in args.items()
    }
    g = torch.Generator().manual_seed(2)
    dout = torch.randn(args["u"].shape, generator=g)
    dout[..., valid:] = 0
    dlast = torch.randn(2, 4, 16, generator=g)
    out_p, last_p, grads_p = run_scan(selective_scan_fn, to_device(args, "cuda", True), dout, dlast)
    out_s, last_s, grads_s = run_scan(
        selective_scan_fn, to_device(short, "cuda", True), dout[..., :valid].contiguous(), dlast
    )
    assert torch.equal(last_p, last_s)
    assert torch.equal(out_p[..., :valid], out_s)
    for k in ("u", "delta", "z"):
        assert torch.equal(grads_p[k][..., :valid], grads_s[k]), k
    assert torch.equal(grads_p["initial_state"], grads_s["initial_state"])
    # Padded steps contribute nothing: exactly zero gradient to delta, B, C there.
    for k in ("delta", "B", "C"):
        assert torch.count_nonzero(grads_p[k][..., valid:]) == 0, k
    # Sums over channels and steps are atomic additions, in no fixed order: equal up to float32 rounding.
    for k in ("B", "C"):
        assert rel_l2(grads_p[k][..., :valid], grads_s[k]) < 1e-6, k
    for k in ("A", "D", "delta_bias"):
        assert rel_l2(grads_p[k], grads_s[k]) < 1e-6, k


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("groups", [0, 2])
def test_state_update_equals_scan_step_by_step(dtype, groups):
    batch, dim, seqlen, dstate = 2, 4, 12, 16
    args = to_device(make_inputs(batch, dim, seqlen, dstate, groups, dtype, seed=groups), "cuda")
    out, last = selective_scan_fn(
        args["u"],
        args["delta"],
        args["A"],
        args["B"],
        args["C"],
        D=args["D"],
        z=args["z"],
        delta_bias=args["delta_bias"],
        delta_softplus=True,
        return_last_state=True,
        initial_state=args["initial_state"],
        dt_scale=args["dt_scale"],
    )
    state = args["initial_state"].clone()
    steps = []
    with torch.no_grad():
        for t in range(seqlen):
            steps.append(
                selective_state_update(
                    state,
                    args["u"][..., t],
                    args["delta"][..., t],
                    args["A"],
                    args["B"][..., t],
                    args["C"][..., t],
                    D=args["D"],
                    z=args["z"][..., t],
                    dt_bias=args["delta_bias"],
                    dt_softplus=True,
                    dt_scale=args["dt_scale"][:, t],
                )
            )
    stepped = torch.stack(steps, dim=-1)  # (B, D, L)
    tol = 1e-5 if dtype == torch.float32 else TOLERANCES[dtype]["out"]
    assert rel_l2(stepped, out) < tol
    assert rel_l2(state, last) < 1e-5


def test_state_update_noncontiguous_state_and_zero_step():
    batch, dim, dstate = 3, 8, 16
    g = torch.Generator().manual_seed(5)
    big = torch.randn(batch, dstate, dim, generator=g).cuda()
    state = big.transpose(1, 2)  # (B, D, N), not contiguous: updated through a copy, written back
    before = state.clone()
    x = torch.randn(batch, dim, generator=g).cuda()
    dt = torch.randn(batch, dim, generator=g).cuda()
    A = -torch.rand(dim, dstate, generator=g).cuda()
    Bm = torch.randn(batch, dstate, generator=g).cuda()
    Cm = torch.randn(batch, dstate, generator=g).cuda()
    scale = torch.tensor([0.0, 1.0, 0.5]).cuda()
    with torch.no_grad():
        y = selective_state_update(state, x, dt, A, Bm, Cm, dt_softplus=True, dt_scale=scale)
    assert torch.equal(state[0], before[0])  # dt_scale 0: exactly unchanged
    assert not torch.equal(state[1], before[1])
    ref_state = before.cpu().clone()
    from hamburg_mamba.ops import selective_state_update_ref

    y_ref = selective_state_update_ref(
        ref_state, x.cpu(), dt.cpu(), A.cpu(), Bm.cpu(), Cm.cpu(), dt_softplus=True, dt_scale=scale.cpu()
    )
    assert rel_l2(state, ref_state) < 1e-6
    assert rel_l2(y, y_ref) < 1e-6


def test_noncontiguous_and_misaligned_inputs():
    # Strided rows, rows starting one element past a 16-byte boundary (the kernels' scalar load path), and
    # tensors strided along L (made contiguous by the host code) give the contiguous inputs' results.
    batch, dim, seqlen, dstate = 2, 4, 777, 16
    base = to_device(make_inputs(batch, dim, seqlen, dstate, 2, torch.float32, seed=9), "cuda")
    g = torch.Generator().manual_seed(3)
    dout = torch.randn(batch, dim, seqlen, generator=g)
    dlast = torch.randn(batch, dim, dstate, generator=g)
    want_out, want_last, want_grads = run_scan(selective_scan_fn, to_device(base, "cuda", True), dout, dlast)

    odd = dict(base)
    u_wide = torch.zeros(batch, 2 * dim, seqlen + 1, device="cuda")
    u_wide[:, ::2, 1:] = base["u"]
    odd["u"] = u_wide[:, ::2, 1:]  # channel stride 2 (L + 1), storage offset 1
    B_wide = torch.zeros(batch, 2, dstate, seqlen + 3, device="cuda")
    B_wide[..., 3:] = base["B"]
    odd["B"] = B_wide[..., 3:]  # rows start 3 elements past the allocation
    odd["delta"] = base["delta"].transpose(1, 2).contiguous().transpose(1, 2)  # stride D along L
    odd["z"] = base["z"].transpose(0, 1).contiguous().transpose(0, 1)  # batch stride < channel stride
    odd["A"] = base["A"].t().contiguous().t()  # (D, N) column-major
    assert not odd["u"].is_contiguous() and odd["u"].storage_offset() == 1
    # to_device makes leaf tensors; the strided views survive because detach() keeps strides.
    odd = to_device(odd, "cuda", True)
    assert odd["u"].stride() == u_wide[:, ::2, 1:].stride()
    got_out, got_last, got_grads = run_scan(selective_scan_fn, odd, dout, dlast)
    assert torch.equal(got_out, want_out)
    assert torch.equal(got_last, want_last)
    for k, v in want_grads.items():  # atomic sums (dA, dB, dC, dD, ddelta_bias) have no fixed order
        assert got_grads[k].shape == v.shape, k
        assert rel_l2(got_grads[k], v) < 1e-6, k


def test_tensors_on_different_devices_raise():
    args = to_device(make_inputs(1, 2, 8, 4, 0, torch.float32), "cuda")
    positional = [args[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state", "dt_scale")]
    for i, name in [(2, "A"), (3, "B"), (5, "D"), (9, "dt_scale")]:
        moved = list(positional)
        moved[i] = moved[i].cpu()
        with pytest.raises(ValueError, match=f"'{name}' is on cpu"):
            _ops.selective_scan_fwd(*moved, True, False)
    cpu_u = list(positional)
    cpu_u[0] = cpu_u[0].cpu()
    with pytest.raises(ValueError, match="same device"):
        _ops.selective_scan_fwd(*cpu_u, True, False)


def test_float64_rejected_on_cuda():
    args = to_device(make_inputs(1, 2, 8, 4, 0, torch.float64), "cuda")
    with pytest.raises(TypeError, match="float64 inputs are supported on the CPU only"):
        selective_scan_fn(args["u"], args["delta"], args["A"].double(), args["B"], args["C"])


def test_large_state_and_many_channels_loop():
    # N = 256 > 128 threads: the per-state setup and final loops take two rounds; B*D = 130 blocks.
    args = make_inputs(2, 65, 130, 256, 5, torch.float32, seed=11)
    compare_with_reference(args, torch.float32)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_second_device():
    args = make_inputs(1, 2, 100, 8, 0, torch.float32)
    on1 = to_device(args, "cuda:1")
    out1, last1 = selective_scan_fn(on1["u"], on1["delta"], on1["A"], on1["B"], on1["C"], return_last_state=True)
    assert out1.device == torch.device("cuda:1")
    on0 = to_device(args, "cuda:0")
    out0, last0 = selective_scan_fn(on0["u"], on0["delta"], on0["A"], on0["B"], on0["C"], return_last_state=True)
    assert torch.equal(out0.cpu(), out1.cpu()) and torch.equal(last0.cpu(), last1.cpu())


def _opcheck_args(requires_grad: bool):
    args = to_device(make_inputs(2, 4, 70, 8, 2, torch.float32, seed=4), "cuda", requires_grad)
    return [args[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state", "dt_scale")]


@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("save_checkpoints", [False, True])
def test_opcheck_fwd(requires_grad, save_checkpoints):
    args = _opcheck_args(requires_grad)
    torch.library.opcheck(_ops.selective_scan_fwd.default, (*args, True, save_checkpoints or requires_grad))


def test_opcheck_bwd_and_state_update():
    args = _opcheck_args(False)
    out, last, chk = _ops.selective_scan_fwd(*args, True, True)
    dout, dlast = torch.randn_like(out), torch.randn_like(last)
    torch.library.opcheck(_ops.selective_scan_bwd.default, (dout, dlast, *args, chk, True))
    torch.library.opcheck(
        _ops.selective_scan_bwd.default,
        (
            dout,
            None,
            *args[:5],
            None,
            None,
            None,
            None,
            None,
            _ops.selective_scan_fwd(*args[:5], None, None, None, None, None, False, True)[2],
            False,
        ),
    )
    u, delta, A, Bm, Cm, D, z, bias, init, scale = args
    state = init.clone()
    torch.library.opcheck(
        _ops.selective_state_update.default,
        (state, u[..., 0], delta[..., 0], A, Bm[..., 0], Cm[..., 0], D, z[..., 0], bias, scale[:, 0], True),
    )


def test_all_optional_combinations_short():
    # All 2^6 on/off combinations of the optional arguments at one short length (cheap: ~1 ms each).
    for flags in itertools.product([False, True], repeat=len(OPTIONAL)):
        kw = dict(zip(OPTIONAL, flags, strict=True))
        args = make_inputs(1, 2, 40, 4, 1, torch.float32, seed=sum(flags), **kw)
        compare_with_reference(args, torch.float32, with_dlast=kw["initial_state"])
