"""The selective-scan ops against the float64 pure-PyTorch reference (the spec), on every device: inputs and
references on the CPU, the op on the `device` fixture's device (tests/ops/conftest.py). Tests of CPU-only
things (ISA levels, thread counts, error messages) run on the CPU alone, and the checks of CUDA-only behaviour
(chunks of the CUDA kernels, agreement with the CPU kernel, the CUDA kernels' refusals) on CUDA alone.

Glossary: B batch, D channels, L steps, N state size, G groups.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from scan_cases import (
    CUDA,
    GRAD_NAMES,
    LOWER_ISA_LEVELS,
    OPTIONAL,
    as_float64,
    check_against_reference,
    dict_to_device,
    make_inputs,
    rel_l2,
    run_under_isa,
    run_with_grads,
    skip_float64_on_cuda,
    tolerance,
    widest_dtype,
)

import hamburg_mamba
from hamburg_mamba.ops import (
    CHECKPOINT_INTERVAL,
    causal_conv1d_fn,
    causal_conv1d_update,
    selective_scan_fn,
    selective_scan_ref,
    selective_state_update,
    selective_state_update_ref,
)

# --------------------------------------------------------------------------------------------------
# Agreement with the reference. Tests that are not about a dtype run in the device's widest one (float64 on the
# CPU, float32 on CUDA).


@pytest.mark.parametrize("dstate", [1, 16, 64, 256])
@pytest.mark.parametrize("seqlen", [1, 2, 7, 64, 255, 2049])
def test_matches_reference_all_options(seqlen, dstate, device):
    # 2049 > the CPU checkpoint interval (64) and the CUDA chunk (2048): one step into the next of each.
    dim = 6 if seqlen * dstate > 100_000 else 20
    args = make_inputs(dim=dim, seqlen=seqlen, dstate=dstate, groups=2, dtype=widest_dtype(device), requires_grad=True)
    check_against_reference(args, device=device)


@pytest.mark.parametrize("seqlen", [70, 700])  # the CUDA kernels' short (L <= 512) and long chunks
@pytest.mark.parametrize("option", ["none", *OPTIONAL, "no_softplus", "ungrouped", "no_dlast", "all"])
def test_each_optional_argument(option, seqlen, device):
    optional = {"none": (), "all": OPTIONAL, "no_softplus": OPTIONAL, "ungrouped": OPTIONAL, "no_dlast": OPTIONAL}
    groups = None if option == "ungrouped" else 2
    softplus = option != "no_softplus"
    args = make_inputs(
        dim=36,
        seqlen=seqlen,
        dstate=16,
        groups=groups,
        dtype=widest_dtype(device),
        optional=optional.get(option, (option,)),
        softplus=softplus,
        requires_grad=True,
    )
    check_against_reference(args, softplus=softplus, device=device, with_dlast=option != "no_dlast")


def test_every_combination_of_optional_arguments(device):
    # All 2^6 on/off combinations of the optional arguments and softplus, at one short length.
    for *flags, softplus in itertools.product([False, True], repeat=len(OPTIONAL) + 1):
        optional = tuple(name for name, on in zip(OPTIONAL, flags, strict=True) if on)
        args = make_inputs(
            batch=1,
            dim=2,
            seqlen=40,
            dstate=4,
            groups=1,
            dtype=torch.float32,
            optional=optional,
            softplus=softplus,
            requires_grad=True,
        )
        check_against_reference(args, softplus=softplus, device=device, with_dlast="initial_state" in optional)


@pytest.mark.parametrize("dim,groups", [(1, None), (16, 1), (17, None), (48, 3), (64, 4), (40, 8)])
def test_channel_blocks_and_groups(dim, groups, device):
    # Channels are processed in blocks of 16 inside each group: full, partial and single-channel blocks.
    args = make_inputs(dim=dim, seqlen=40, dstate=5, groups=groups, dtype=widest_dtype(device), requires_grad=True)
    check_against_reference(args, device=device)


def test_largest_state_with_many_channels(device):
    # N = 256: more states than the CUDA kernels' 128 threads (their per-state loops take two rounds); B * D = 130.
    args = make_inputs(dim=65, seqlen=130, dstate=256, groups=5, dtype=widest_dtype(device), requires_grad=True)
    check_against_reference(args, device=device)


@pytest.mark.parametrize("seqlen", [7, 255, 2049])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_dtypes(dtype, seqlen, device):
    check_against_reference(
        make_inputs(dim=24, seqlen=seqlen, dstate=16, dtype=dtype, requires_grad=True), device=device
    )


def test_float32_accuracy_long_sequence(device):
    # L > 4096: the polynomial exp must not cost accuracy over long recurrences.
    args = make_inputs(batch=1, dim=8, seqlen=5000, dstate=16, groups=None, dtype=torch.float32, requires_grad=True)
    check_against_reference(args, device=device)


def test_gradcheck_float64():
    args = make_inputs(batch=2, dim=5, seqlen=9, dstate=3, groups=None, requires_grad=True)
    names = [k for k in args if k != "dt_scale"]

    def fn(*tensors):
        kw = dict(zip(names, tensors, strict=True), dt_scale=args["dt_scale"])
        return selective_scan_fn(**kw, delta_softplus=True, return_last_state=True)

    assert torch.autograd.gradcheck(fn, [args[k] for k in names], eps=1e-6, atol=1e-7, rtol=1e-5)


def test_gradient_flows_through_last_state_only(device):
    dtype = widest_dtype(device)
    args = make_inputs(seqlen=20, dstate=4, dtype=dtype, requires_grad=True)
    on_device = dict_to_device(args, device)
    _, last = selective_scan_fn(**on_device, delta_softplus=True, return_last_state=True)
    rargs = as_float64(args)
    _, rlast = selective_scan_ref(**rargs, delta_softplus=True, return_last_state=True)
    grads = torch.autograd.grad(last.sum(), [on_device["A"], on_device["initial_state"], on_device["B"]])
    rgrads = torch.autograd.grad(rlast.sum(), [rargs["A"], rargs["initial_state"], rargs["B"]])
    tol = 1e-11 if dtype == torch.float64 else tolerance(dtype, device)[1]
    for got, want in zip(grads, rgrads, strict=True):
        assert rel_l2(got.cpu(), want) < tol
    assert grads[0].abs().sum() > 0


def test_non_contiguous_inputs(device):
    args = make_inputs(dim=18, seqlen=30, dstate=6, groups=2, dtype=widest_dtype(device))
    strided = {
        # (B, L, D) storage viewed as (B, D, L): stride 1 along D, not L.
        "u": args["u"].transpose(1, 2).contiguous().transpose(1, 2),
        "delta": args["delta"].transpose(1, 2).contiguous().transpose(1, 2),
        "z": args["z"].transpose(1, 2).contiguous().transpose(1, 2),
        # Every other step of a twice-as-long tensor.
        "B": torch.stack([args["B"], args["B"]], dim=-1).flatten(-2)[..., ::2],
        "C": args["C"].transpose(2, 3).contiguous().transpose(2, 3),
        "A": args["A"].t().contiguous().t(),
        "D": torch.stack([args["D"], args["D"]], dim=-1)[:, 0],
        "delta_bias": args["delta_bias"],
        "initial_state": args["initial_state"].transpose(1, 2).contiguous().transpose(1, 2),
        "dt_scale": args["dt_scale"].t().contiguous().t(),
    }
    assert not strided["u"].is_contiguous() and not strided["B"].is_contiguous()
    for name in ("u", "delta", "B", "C", "A", "D", "z", "initial_state", "dt_scale"):
        assert torch.equal(strided[name], args[name])
    for k, v in strided.items():
        if k != "dt_scale":
            v.requires_grad_(True)
    check_against_reference(strided, device=device)


def test_row_strided_inputs_keep_their_own_strides(device):
    """Views with unit stride along L but padded rows are passed to the kernel as they are (not copied), so each
    tensor's own channel / state / batch strides must reach the kernel: every tensor here has different ones."""
    args = make_inputs(dim=12, seqlen=20, dstate=5, groups=2, dtype=widest_dtype(device))

    def padded(t, pads):
        """`t` as a view into a larger zero tensor: dimension i padded by pads[i] (the last pad keeps stride 1)."""
        big = t.new_zeros([n + p for n, p in zip(t.shape, pads, strict=True)])
        view = big[tuple(slice(0, n) for n in t.shape)]
        view.copy_(t)
        return view

    strided = dict(args)
    strided["u"] = padded(args["u"], (1, 3, 5))
    strided["delta"] = padded(args["delta"], (0, 2, 1))
    strided["z"] = padded(args["z"], (2, 1, 9))
    strided["B"] = padded(args["B"], (1, 0, 1, 2))
    strided["C"] = padded(args["C"], (0, 1, 3, 7))
    views = [strided[k] for k in ("u", "delta", "z", "B", "C")]
    assert all(v.stride(-1) == 1 and not v.is_contiguous() for v in views)
    assert len({v.stride()[:-1] for v in views}) == len(views)
    for k, v in strided.items():
        if k != "dt_scale" and isinstance(v, torch.Tensor):
            v.requires_grad_(True)
    check_against_reference(strided, device=device)


def test_expanded_batch_broadcast_inputs(device):
    # B and C shared by the whole batch via stride-0 expansion.
    args = make_inputs(
        batch=3, dim=16, seqlen=12, dstate=4, groups=None, dtype=widest_dtype(device), requires_grad=True
    )
    args["B"] = args["B"][:1].expand(3, -1, -1)
    args["C"] = args["C"][:1].expand(3, -1, -1)
    assert args["B"].stride(0) == 0
    check_against_reference(args, device=device)


# --------------------------------------------------------------------------------------------------
# Padding, streaming, determinism.


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_padded_steps_are_exact_noops(dtype, device):
    # Identity steps compose exactly, and every length here takes the same CUDA kernel configuration (L <= 512),
    # so padding changes no bit on either device.
    skip_float64_on_cuda(dtype, device)
    lengths = [13, 40, 1]
    seqlen = max(lengths)
    args = make_inputs(batch=3, dim=20, seqlen=seqlen, dstate=8, dtype=dtype, requires_grad=True)
    mask = torch.arange(seqlen)[None, :] < torch.tensor(lengths)[:, None]  # (B, L)
    args["dt_scale"] = args["dt_scale"] * mask
    # Padded positions hold garbage, which must not leak anywhere.
    with torch.no_grad():
        for name in ("u", "delta", "z"):
            args[name][~mask[:, None, :].expand_as(args[name])] = 123.0
        for name in ("B", "C"):
            args[name][~mask[:, None, None, :].expand_as(args[name])] = -77.0
    args = dict_to_device(args, device)
    dout = torch.randn(args["u"].shape, dtype=torch.float64) * mask[:, None, :]
    out, last, grads = run_with_grads(selective_scan_fn, args, True, dout, torch.ones(args["initial_state"].shape))
    # Each sequence alone, truncated to its length, gives bitwise the same outputs and last state.
    for b, n in enumerate(lengths):
        one = {
            k: (
                v[b : b + 1, ..., :n]
                if k in ("u", "delta", "z", "B", "C")
                else v[b : b + 1, :n]
                if k == "dt_scale"
                else v[b : b + 1]
                if k == "initial_state"
                else v
            )
            for k, v in args.items()
        }
        o1, s1 = selective_scan_fn(**one, delta_softplus=True, return_last_state=True)
        assert torch.equal(o1[0].cpu(), out[b, :, :n])
        assert torch.equal(s1[0].cpu(), last[b])
    pad = ~mask
    for name in ("u", "delta", "z"):
        assert torch.all(grads[name][pad[:, None, :].expand_as(grads[name])] == 0), name
    for name in ("B", "C"):
        assert torch.all(grads[name][pad[:, None, None, :].expand_as(grads[name])] == 0), name
    for name in GRAD_NAMES:
        assert torch.isfinite(grads[name]).all(), name


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_state_update_equals_scan_step_by_step(dtype, grouped, device):
    skip_float64_on_cuda(dtype, device)
    args = make_inputs(batch=3, dim=24, seqlen=20, dstate=16, groups=3 if grouped else None, dtype=dtype)
    on_device = dict_to_device(args, device)
    out, last = selective_scan_fn(**on_device, delta_softplus=True, return_last_state=True)
    state = on_device["initial_state"].clone()
    steps, ref_steps = [], []
    ref_state = args["initial_state"].clone()
    with torch.no_grad():
        for t in range(args["u"].shape[-1]):
            kw = dict(
                x=args["u"][..., t],
                dt=args["delta"][..., t],
                A=args["A"],
                B=args["B"][..., t],
                C=args["C"][..., t],
                D=args["D"],
                z=args["z"][..., t],
                dt_bias=args["delta_bias"],
                dt_softplus=True,
                dt_scale=args["dt_scale"][:, t],
            )
            steps.append(selective_state_update(state, **dict_to_device(kw, device)))
            ref_steps.append(selective_state_update_ref(ref_state, **kw))
    out, last, state = out.cpu(), last.cpu(), state.cpu()
    # The states are float32 (float64) on both paths; outputs of a bfloat16 step are rounded to bfloat16.
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    tol_out = tolerance(dtype, device)[0] if dtype == torch.bfloat16 else tol
    assert rel_l2(torch.stack(steps, -1).cpu(), out) < tol_out
    assert rel_l2(state, last) < tol
    assert rel_l2(torch.stack(ref_steps, -1), out) < tol_out
    assert rel_l2(ref_state, last) < tol


def test_state_update_non_contiguous_state_is_updated_in_place(device):
    args = make_inputs(batch=2, dim=8, seqlen=1, dstate=4, groups=None, dtype=torch.float32)
    storage = args["initial_state"].transpose(1, 2).contiguous().to(device)  # (B, N, D)
    state = storage.transpose(1, 2)  # (B, D, N) view, not contiguous
    expected = state.cpu().clone()
    kw = dict(
        x=args["u"][..., 0],
        dt=args["delta"][..., 0],
        A=args["A"],
        B=args["B"][..., 0],
        C=args["C"][..., 0],
        dt_softplus=True,
    )
    with torch.no_grad():
        out = selective_state_update(state, **dict_to_device(kw, device))
        ref = selective_state_update_ref(expected, **kw)
    assert rel_l2(state.cpu(), expected) < 1e-6 and rel_l2(out.cpu(), ref) < 1e-6
    assert rel_l2(storage.transpose(1, 2).cpu(), expected) < 1e-6


def test_state_update_zero_step_leaves_the_state_unchanged(device):
    # dt_scale 0 is no time elapsed: that row's state stays bit for bit; the others move as the reference's.
    g = torch.Generator().manual_seed(5)
    batch, dim, dstate = 3, 8, 16
    state = torch.randn(batch, dim, dstate, generator=g)
    kw = dict(
        x=torch.randn(batch, dim, generator=g),
        dt=torch.randn(batch, dim, generator=g),
        A=-torch.rand(dim, dstate, generator=g),
        B=torch.randn(batch, dstate, generator=g),
        C=torch.randn(batch, dstate, generator=g),
        dt_softplus=True,
        dt_scale=torch.tensor([0.0, 1.0, 0.5]),
    )
    ref_state = state.clone()
    on_device = state.clone().to(device)
    with torch.no_grad():
        out = selective_state_update(on_device, **dict_to_device(kw, device))
    want = selective_state_update_ref(ref_state, **kw)
    assert torch.equal(on_device[0].cpu(), state[0])
    assert not torch.equal(on_device[1].cpu(), state[1])
    assert rel_l2(on_device.cpu(), ref_state) < 1e-6
    assert rel_l2(out.cpu(), want) < 1e-6


def test_bitwise_deterministic_across_runs_and_thread_counts():
    args = make_inputs(batch=2, dim=64, seqlen=300, dstate=16, dtype=torch.float32, requires_grad=True)
    results = []
    threads = torch.get_num_threads()
    try:
        for n_threads in (threads, threads, 1):
            torch.set_num_threads(n_threads)
            out, last = selective_scan_fn(**args, delta_softplus=True, return_last_state=True)
            grads = torch.autograd.grad(out.sum() + last.sum(), [args[k] for k in GRAD_NAMES])
            results.append((out, last, *grads))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for x, y in zip(results[0], other, strict=True):
            assert torch.equal(x, y)


def check_every_dtype_at_this_isa_level():
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        check_against_reference(make_inputs(dim=20, seqlen=100, dstate=17, dtype=dtype, requires_grad=True))


@pytest.mark.parametrize("isa", LOWER_ISA_LEVELS)
def test_lower_isa_levels_match_reference(isa):
    """Each compiled ISA variant (picked at run time) is correct; the cap is read once per process."""
    run_under_isa(isa, __file__, ["check_every_dtype_at_this_isa_level"])


# --------------------------------------------------------------------------------------------------
# torch.library integration.


def op_args(args, softplus=True, save=True):
    return (
        args["u"],
        args["delta"],
        args["A"],
        args["B"],
        args["C"],
        args.get("D"),
        args.get("z"),
        args.get("delta_bias"),
        args.get("initial_state"),
        args.get("dt_scale"),
        softplus,
        save,
    )


@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("optional", [(), OPTIONAL])
def test_opcheck_forward(requires_grad, optional, device):
    # A forward for training saves the checkpoints, an inference forward does not.
    args = make_inputs(
        batch=2, dim=20, seqlen=70, dstate=5, dtype=torch.float32, optional=optional, requires_grad=requires_grad
    )
    torch.library.opcheck(
        torch.ops.hamburg_mamba.selective_scan_fwd, op_args(dict_to_device(args, device), save=requires_grad)
    )


def test_opcheck_backward_and_state_update(device):
    args = dict_to_device(make_inputs(batch=2, dim=20, seqlen=70, dstate=5, dtype=torch.float32), device)
    out, last, chk = torch.ops.hamburg_mamba.selective_scan_fwd(*op_args(args))
    dout, dlast = torch.randn_like(out), torch.randn_like(last)
    bwd_args = (dout, dlast, *op_args(args)[:10], chk, True)
    torch.library.opcheck(torch.ops.hamburg_mamba.selective_scan_bwd, bwd_args)
    # No optional argument, no gradient of the last state, no softplus.
    plain = make_inputs(batch=2, dim=20, seqlen=70, dstate=5, dtype=torch.float32, optional=(), softplus=False)
    plain = dict_to_device(plain, device)
    _, _, plain_chk = torch.ops.hamburg_mamba.selective_scan_fwd(*op_args(plain, softplus=False))
    torch.library.opcheck(
        torch.ops.hamburg_mamba.selective_scan_bwd, (dout, None, *op_args(plain)[:10], plain_chk, False)
    )
    state = args["initial_state"].clone()
    su_args = (
        state,
        args["u"][..., 0],
        args["delta"][..., 0],
        args["A"],
        args["B"][..., 0],
        args["C"][..., 0],
        args["D"],
        args["z"][..., 0],
        args["delta_bias"],
        args["dt_scale"][:, 0],
        True,
    )
    torch.library.opcheck(torch.ops.hamburg_mamba.selective_state_update, su_args)


def test_checkpoints_hold_the_states_before_each_chunk(device):
    seqlen = 3 * CHECKPOINT_INTERVAL + 5
    dtype = widest_dtype(device)
    args = make_inputs(batch=2, dim=4, seqlen=seqlen, dstate=3, dtype=dtype)
    _, _, chk = torch.ops.hamburg_mamba.selective_scan_fwd(*op_args(dict_to_device(args, device)))
    chk = chk.cpu()
    assert chk.shape == (2, 4, 4, 3)
    for k in range(4):
        t = k * CHECKPOINT_INTERVAL
        if t == 0:
            want = args["initial_state"]
        else:
            sub = {
                n: (v[..., :t] if n in ("u", "delta", "z", "B", "C") else v[:, :t] if n == "dt_scale" else v)
                for n, v in args.items()
            }
            _, want = selective_scan_ref(**as_float64(sub), delta_softplus=True, return_last_state=True)
        assert rel_l2(chk[:, :, k], want) < (1e-12 if dtype == torch.float64 else tolerance(dtype, device)[0])


def test_torch_compile_fullgraph_matches_eager():
    args = make_inputs(batch=2, dim=16, seqlen=40, dstate=8, dtype=torch.float32, requires_grad=True)

    def f(u, delta, A, B, C, D, z, delta_bias, initial_state, dt_scale):
        out, last = selective_scan_fn(
            torch.tanh(u), delta, A, B, C, D, z, delta_bias, True, True, initial_state, dt_scale
        )
        return out * 2 + 1, last.square()

    order = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state", "dt_scale"]
    inputs = [args[k] for k in order]
    compiled = torch.compile(f, fullgraph=True, backend="inductor")
    out_c, last_c = compiled(*inputs)
    out_e, last_e = f(*inputs)
    assert torch.allclose(out_c, out_e, rtol=1e-5, atol=1e-5)
    assert torch.allclose(last_c, last_e, rtol=1e-5, atol=1e-5)
    grads_c = torch.autograd.grad(out_c.sum() + last_c.sum(), inputs[:9])
    grads_e = torch.autograd.grad(out_e.sum() + last_e.sum(), inputs[:9])
    for gc, ge in zip(grads_c, grads_e, strict=True):
        assert rel_l2(gc, ge) < 1e-5


def test_fake_tensor_shapes_match_real_outputs(device):
    from torch._subclasses.fake_tensor import FakeTensorMode

    args = dict_to_device(make_inputs(batch=2, dim=20, seqlen=130, dstate=5, groups=None, dtype=torch.bfloat16), device)
    real = torch.ops.hamburg_mamba.selective_scan_fwd(*op_args(args))
    with FakeTensorMode() as mode:
        fake_args = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in op_args(args)]
        fake = torch.ops.hamburg_mamba.selective_scan_fwd(*fake_args)
    for r, f in zip(real, fake, strict=True):
        assert r.shape == f.shape and r.dtype == f.dtype and r.device == f.device


def test_cpu_isa_is_reported():
    assert hamburg_mamba.cpu_isa() in ("avx512", "avx2", "baseline")


# --------------------------------------------------------------------------------------------------
# Bad input: an error that names the argument and what was expected.


def _fwd(**overrides):
    args = make_inputs(batch=2, dim=8, seqlen=10, dstate=4, groups=None, dtype=torch.float32)
    args.update(overrides)
    return selective_scan_fn(**{k: v for k, v in args.items() if v is not None}, delta_softplus=True)


@pytest.mark.parametrize(
    "overrides,error,pattern",
    [
        (
            {"delta": torch.zeros(2, 8, 11)},
            ValueError,
            r"'delta' must have shape \(B, D, L\) = \(2, 8, 10\), got \(2, 8, 11\)",
        ),
        ({"u": torch.zeros(2, 8)}, ValueError, r"'u' must have shape \(B, D, L\)"),
        ({"A": torch.zeros(8, 300)}, ValueError, r"N = A.shape\[1\] must be in \[1, 256\], got 300"),
        ({"A": torch.zeros(7, 4)}, ValueError, r"'A' must have shape \(D, N\) with D = 8"),
        (
            {"B": torch.zeros(2, 3, 4, 10), "C": torch.zeros(2, 3, 4, 10)},
            ValueError,
            r"G = B.shape\[1\] = 3 must divide D = 8",
        ),
        ({"C": torch.zeros(2, 5, 10)}, ValueError, r"'C' must have shape \(B, N, L\) like 'B' = \(2, 4, 10\)"),
        ({"D": torch.zeros(9)}, ValueError, r"'D' must have shape \(D,\) = \(8,\), got \(9,\)"),
        ({"z": torch.zeros(1, 8, 10)}, ValueError, r"'z' must have shape"),
        (
            {"initial_state": torch.zeros(2, 8, 5)},
            ValueError,
            r"'initial_state' must have shape \(B, D, N\) = \(2, 8, 4\)",
        ),
        ({"dt_scale": torch.zeros(2, 9)}, ValueError, r"'dt_scale' must have shape \(B, L\) = \(2, 10\)"),
        ({"dt_scale": -torch.ones(2, 10)}, ValueError, r"'dt_scale' must be finite and non-negative"),
        ({"dt_scale": torch.full((2, 10), float("nan"))}, ValueError, r"'dt_scale' must be finite and non-negative"),
        ({"dt_scale": torch.full((2, 10), float("inf"))}, ValueError, r"'dt_scale' must be finite and non-negative"),
        (
            {"u": torch.zeros(2, 8, 10, dtype=torch.int32)},
            TypeError,
            r"'u' must be float32, float16, bfloat16 or float64, got Int",
        ),
        (
            {"delta": torch.zeros(2, 8, 10, dtype=torch.float64)},
            TypeError,
            r"'delta' must have the dtype of 'u' \(Float\), got Double",
        ),
        ({"A": torch.zeros(8, 4, dtype=torch.float16)}, TypeError, r"'A' must be float32 or float64, got Half"),
        ({"u": torch.zeros(2, 8, 0), "delta": torch.zeros(2, 8, 0)}, ValueError, r"'u' must be non-empty"),
        ({"u": torch.zeros(0, 8, 10)}, ValueError, r"'u' must be non-empty"),
    ],
)
def test_bad_inputs_name_the_argument(overrides, error, pattern):
    with pytest.raises(error, match=pattern):
        _fwd(**overrides)


def test_dt_scale_requiring_grad_is_rejected():
    with pytest.raises(ValueError, match="'dt_scale' is data"):
        _fwd(dt_scale=torch.ones(2, 10, requires_grad=True))


def test_backward_without_checkpoints_is_rejected():
    args = make_inputs(batch=2, dim=8, seqlen=10, dstate=4, dtype=torch.float32)
    out, _, chk = torch.ops.hamburg_mamba.selective_scan_fwd(*op_args(args, save=False))
    assert chk.numel() == 0
    with pytest.raises(ValueError, match="save_checkpoints=True"):
        torch.ops.hamburg_mamba.selective_scan_bwd(out, None, *op_args(args)[:10], chk, True)


def test_state_update_bad_inputs():
    state = torch.zeros(2, 8, 4)
    kw = dict(x=torch.zeros(2, 8), dt=torch.zeros(2, 8), A=torch.zeros(8, 4), B=torch.zeros(2, 4), C=torch.zeros(2, 4))
    with torch.no_grad():
        with pytest.raises(ValueError, match=r"'dt' must have shape \(B, D\) = \(2, 8\)"):
            selective_state_update(state, **{**kw, "dt": torch.zeros(2, 7)})
        with pytest.raises(TypeError, match=r"'state' must be Float"):
            selective_state_update(state.double(), **kw)
        with pytest.raises(ValueError, match=r"'B' must have shape \(B, N\) or \(B, G, N\)"):
            selective_state_update(state, **{**kw, "B": torch.zeros(2)})
    with pytest.raises(RuntimeError, match="inference op"):
        selective_state_update(state, **{**kw, "A": torch.zeros(8, 4, requires_grad=True)})


# --------------------------------------------------------------------------------------------------
# CUDA only: chunks of the CUDA kernels, agreement with the CPU kernel, refusals.


def as_leaves(args: dict) -> dict:
    """`args` detached (strides kept), the differentiable inputs as leaves that require grad."""
    return {k: v.detach().requires_grad_(k in GRAD_NAMES) for k, v in args.items()}


@pytest.mark.parametrize("device", [CUDA])
@pytest.mark.parametrize("dstate", [1, 16, 64, 256])
def test_long_sequences_span_several_cuda_chunks(dstate, device):
    # L = 4500: two full chunks of the long kernel (2048 steps) and a partial one, where a coarse exp would show.
    args = make_inputs(dim=4, seqlen=4500, dstate=dstate, groups=2, dtype=torch.float32, requires_grad=True)
    check_against_reference(args, device=device)


@pytest.mark.parametrize("device", [CUDA])
@pytest.mark.parametrize("seqlen", [1, 63, 64, 65, 511, 513, 4500])
def test_cuda_checkpoints_and_last_state_match_the_cpu_kernel(seqlen, device):
    # Same tensor meaning on both devices: entry k is the state before step 64 k (the CPU kernel's checkpoints
    # are tested against the reference above).
    args = make_inputs(dim=3, seqlen=seqlen, dstate=16, groups=None, dtype=torch.float32)
    _, cpu_last, cpu_chk = torch.ops.hamburg_mamba.selective_scan_fwd(*op_args(args))
    on_device = dict_to_device(args, device)
    _, last, chk = torch.ops.hamburg_mamba.selective_scan_fwd(*op_args(on_device))
    n_chunks = -(-seqlen // CHECKPOINT_INTERVAL)
    assert chk.shape == (2, 3, n_chunks, 16) and chk.dtype == torch.float32 and chk.is_cuda
    assert torch.equal(chk[:, :, 0].cpu(), args["initial_state"])
    assert rel_l2(chk.cpu(), cpu_chk) < 1e-5
    assert rel_l2(last.cpu(), cpu_last) < 1e-5
    # Without save_checkpoints the tensor is empty.
    assert torch.ops.hamburg_mamba.selective_scan_fwd(*op_args(on_device, save=False))[2].numel() == 0


@pytest.mark.parametrize("device", [CUDA])
@pytest.mark.parametrize("seqlen,pad", [(300, 100), (1000, 300), (2300, 400), (4500, 2400)])
def test_cuda_padded_steps_are_exact_no_ops_in_every_chunk_configuration(seqlen, pad, device):
    # A right-padded batch (dt_scale 0 on the last `pad` steps, zero output gradient there) against its unpadded
    # prefix. Both lengths take the same kernel configuration (short or long chunks) and identity steps compose
    # exactly, so the results are bitwise equal wherever no atomic summation order is involved.
    args = make_inputs(dim=4, seqlen=seqlen, dstate=16, groups=2, dtype=torch.float32, seed=pad)
    valid = seqlen - pad
    args["dt_scale"][:, valid:] = 0
    along_l = ("u", "delta", "z", "B", "C", "dt_scale")
    short = {k: v[..., :valid].contiguous() if k in along_l else v for k, v in args.items()}
    g = torch.Generator().manual_seed(2)
    dout = torch.randn(args["u"].shape, generator=g, dtype=torch.float64)
    dout[..., valid:] = 0
    dlast = torch.randn(args["initial_state"].shape, generator=g, dtype=torch.float64)
    out_p, last_p, grads_p = run_with_grads(
        selective_scan_fn, as_leaves(dict_to_device(args, device)), True, dout, dlast
    )
    out_s, last_s, grads_s = run_with_grads(
        selective_scan_fn, as_leaves(dict_to_device(short, device)), True, dout[..., :valid].contiguous(), dlast
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


@pytest.mark.parametrize("device", [CUDA])
def test_cuda_strided_and_misaligned_inputs_equal_contiguous_ones(device):
    # Strided rows, rows starting one element past a 16-byte boundary (the kernels' scalar load path), and
    # tensors strided along L (made contiguous by the host code) give the contiguous inputs' results.
    batch, dim, seqlen, dstate = 2, 4, 777, 16
    base = dict_to_device(
        make_inputs(dim=dim, seqlen=seqlen, dstate=dstate, groups=2, dtype=torch.float32, seed=9), device
    )
    g = torch.Generator().manual_seed(3)
    dout = torch.randn(batch, dim, seqlen, generator=g, dtype=torch.float64)
    dlast = torch.randn(batch, dim, dstate, generator=g, dtype=torch.float64)
    want_out, want_last, want_grads = run_with_grads(selective_scan_fn, as_leaves(base), True, dout, dlast)

    odd = dict(base)
    u_wide = torch.zeros(batch, 2 * dim, seqlen + 1, device=device)
    u_wide[:, ::2, 1:] = base["u"]
    odd["u"] = u_wide[:, ::2, 1:]  # channel stride 2 (L + 1), storage offset 1
    B_wide = torch.zeros(batch, 2, dstate, seqlen + 3, device=device)
    B_wide[..., 3:] = base["B"]
    odd["B"] = B_wide[..., 3:]  # rows start 3 elements past the allocation
    odd["delta"] = base["delta"].transpose(1, 2).contiguous().transpose(1, 2)  # stride D along L
    odd["z"] = base["z"].transpose(0, 1).contiguous().transpose(0, 1)  # batch stride < channel stride
    odd["A"] = base["A"].t().contiguous().t()  # (D, N) column-major
    odd = as_leaves(odd)
    assert not odd["u"].is_contiguous() and odd["u"].storage_offset() == 1
    got_out, got_last, got_grads = run_with_grads(selective_scan_fn, odd, True, dout, dlast)
    assert torch.equal(got_out, want_out)
    assert torch.equal(got_last, want_last)
    for k, v in want_grads.items():  # atomic sums (dA, dB, dC, dD, ddelta_bias) have no fixed order
        assert got_grads[k].shape == v.shape, k
        assert rel_l2(got_grads[k], v) < 1e-6, k


@pytest.mark.parametrize("device", [CUDA])
def test_cuda_and_cpu_tensors_in_one_call_raise(device):
    positional = op_args(
        dict_to_device(make_inputs(batch=1, dim=2, seqlen=8, dstate=4, groups=None, dtype=torch.float32), device)
    )
    for i, name in [(2, "A"), (3, "B"), (5, "D"), (9, "dt_scale")]:
        moved = list(positional)
        moved[i] = moved[i].cpu()
        with pytest.raises(ValueError, match=f"'{name}' is on cpu"):
            torch.ops.hamburg_mamba.selective_scan_fwd(*moved)
    cpu_u = list(positional)
    cpu_u[0] = cpu_u[0].cpu()
    with pytest.raises(ValueError, match="same device"):
        torch.ops.hamburg_mamba.selective_scan_fwd(*cpu_u)


@pytest.mark.parametrize("device", [CUDA])
def test_cuda_kernels_refuse_float64(device):
    # float64 is a CPU-only dtype: every CUDA op refuses it, naming its data argument.
    scan = dict_to_device(make_inputs(batch=1, dim=2, seqlen=8, dstate=4, groups=None, optional=()), device)
    with pytest.raises(TypeError, match=r"float64 inputs are supported on the CPU only \(got 'u' on cuda"):
        selective_scan_fn(**scan)
    step = {k: v[..., 0] for k, v in scan.items() if k in ("u", "delta", "B", "C")}
    with (
        torch.no_grad(),
        pytest.raises(TypeError, match=r"float64 inputs are supported on the CPU only \(got 'x' on cuda"),
    ):
        selective_state_update(
            torch.zeros(1, 2, 4, dtype=torch.float64, device=device),
            step["u"],
            step["delta"],
            scan["A"],
            step["B"],
            step["C"],
        )
    x, weight = scan["u"], torch.randn(2, 4, dtype=torch.float64, device=device)
    with pytest.raises(TypeError, match=r"float64 inputs are supported on the CPU only \(got 'x' on cuda"):
        causal_conv1d_fn(x, weight)
    with pytest.raises(TypeError, match=r"float64 inputs are supported on the CPU only \(got 'x' on cuda"):
        causal_conv1d_update(x[..., 0], torch.zeros(1, 2, 3, dtype=torch.float64, device=device), weight)


@pytest.mark.parametrize("device", [CUDA])
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_cuda_second_device_gives_the_first_ones_results(device):
    args = make_inputs(batch=1, dim=2, seqlen=100, dstate=8, groups=None, dtype=torch.float32, optional=())
    results = []
    for index in (1, 0):
        on = {k: v.to(f"cuda:{index}") for k, v in args.items()}
        out, last = selective_scan_fn(**on, return_last_state=True)
        assert out.device == torch.device(f"cuda:{index}")
        results.append((out.cpu(), last.cpu()))
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))
