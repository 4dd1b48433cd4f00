"""The causal conv1d ops (causal-conv1d's causal_conv1d_fn / causal_conv1d_update) against the float64
pure-PyTorch references (the spec), plus torch.library integration and argument checks. The numerics and opcheck
tests run on each device of the `device` fixture (tests/ops/conftest.py): inputs and references on the CPU, the
op on the device; ISA levels, torch.compile and the error messages on the CPU alone.

Glossary: B batch, D channels, L steps, W kernel width, S conv_state length.
"""

from __future__ import annotations

import pytest
import torch
from scan_cases import dict_to_device, rel_l2, run_under_isa, skip_float64_on_cuda, to_device, widest_dtype

import hamburg_mamba
from hamburg_mamba.ops import (
    causal_conv1d_fn,
    causal_conv1d_ref,
    causal_conv1d_update,
    causal_conv1d_update_ref,
)

# Relative L2 error bounds against the float64 reference on the same (rounded) inputs, for (out, gradients).
# The kernels sum in float32 (float64 for float64 inputs); what remains is the final rounding to the dtype,
# whose relative L2 error is about u / sqrt(3) for unit roundoff u: float16 u = 4.9e-4 (-> 2.8e-4),
# bfloat16 u = 3.9e-3 (-> 2.3e-3); bounds with a factor of 3 to 4 of margin. float32: W-term sums and
# the float32 dweight sums over B * L steps stay near 1e-7, on the CPU and in the CUDA kernels.
TOLERANCE = {
    torch.float64: (1e-13, 1e-12),
    torch.float32: (1e-6, 1e-5),
    torch.float16: (1e-3, 1e-3),
    torch.bfloat16: (8e-3, 8e-3),
}
LOW_PRECISION = (torch.float16, torch.bfloat16)


def make_conv_inputs(batch=2, dim=5, seqlen=37, width=4, dtype=torch.float64, weight_dtype=None, seed=0):
    """x, weight, bias, initial_states in the ranges of a Mamba block (weights of order 1 / sqrt(W))."""
    g = torch.Generator().manual_seed(seed)
    weight_dtype = weight_dtype or dtype

    def rnd(*shape, scale=1.0, dt=dtype):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dt)

    return dict(
        x=rnd(batch, dim, seqlen),
        weight=rnd(dim, width, scale=width**-0.5, dt=weight_dtype),
        bias=rnd(dim, scale=0.3, dt=weight_dtype),
        initial_states=rnd(batch, dim, width - 1),
    )


def grads_of(fn, args, dout, dfinal, device="cpu", **kwargs):
    """(out, final_states, {name: gradient}) of <out, dout> + <final_states, dfinal>, with fn run on `device`
    (the arguments moved there in their layouts); results on the CPU."""
    args = dict_to_device(args, device)
    leaves = {
        k: v.detach().clone().requires_grad_(True) for k, v in args.items() if v is not None and v.is_floating_point()
    }
    data = {k: v for k, v in args.items() if k not in leaves}  # seq_idx, absent arguments
    out = fn(**leaves, **data, **kwargs)
    out, final = out if isinstance(out, tuple) else (out, None)
    loss = (out.double() * dout.to(device)).sum()
    if final is not None:
        loss = loss + (final.double() * dfinal.to(device)).sum()
    grads = torch.autograd.grad(loss, list(leaves.values()))
    final = final.cpu() if final is not None else None
    return out.cpu(), final, {k: v.cpu() for k, v in zip(leaves, grads, strict=True)}


def check_against_reference(args, device="cpu", **kwargs):
    """Compares out, final_states and every gradient of causal_conv1d_fn on `device` with causal_conv1d_ref in
    float64 on the CPU."""
    dtype = args["x"].dtype
    tol_out = TOLERANCE[dtype][0]
    g = torch.Generator().manual_seed(1)
    # Output gradients rounded to x's dtype: autograd hands the op its output's gradient in that dtype.
    dout = torch.randn(args["x"].shape, generator=g, dtype=torch.float64).to(dtype).double()
    batch, dim, _ = args["x"].shape
    dfinal = torch.randn(batch, dim, args["weight"].shape[1] - 1, generator=g, dtype=torch.float64).to(dtype).double()
    out, final, grads = grads_of(causal_conv1d_fn, args, dout, dfinal, device, **kwargs)
    ref_args = {k: (v.double() if v is not None and v.is_floating_point() else v) for k, v in args.items()}
    rout, rfinal, rgrads = grads_of(causal_conv1d_ref, ref_args, dout, dfinal, **kwargs)
    assert out.dtype == dtype and out.shape == args["x"].shape
    assert rel_l2(out, rout) < tol_out, f"out: {rel_l2(out, rout):.2e}"
    if final is not None:
        assert final.dtype == dtype
        assert torch.equal(final.double(), rfinal), "final_states must be exact copies of the inputs"
    for name, grad in grads.items():
        assert grad.dtype == args[name].dtype and grad.shape == args[name].shape, name
        # A gradient is rounded to its input's dtype (dweight to a bfloat16 weight's, dx to x's).
        err = rel_l2(grad, rgrads[name])
        assert err < TOLERANCE[grad.dtype][1], f"d{name}: {err:.2e}"


# --------------------------------------------------------------------------------------------------
# causal_conv1d_fn against the reference.


@pytest.mark.parametrize("width", [2, 3, 4])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("activation", [None, "silu"])
def test_forward_and_gradients_match_reference(width, dtype, activation, device):
    skip_float64_on_cuda(dtype, device)
    args = make_conv_inputs(width=width, dtype=dtype)
    check_against_reference(args, device, activation=activation, return_final_states=True)


@pytest.mark.parametrize("seqlen", [1, 2, 255, 256, 257, 600])
def test_sequence_lengths_around_the_tile(seqlen, device):
    # The CPU kernel works in tiles of 256 steps, the CUDA kernels in blocks of 256 threads; L < W - 1 takes
    # final states from the initial states. In the device's widest dtype (float64 on the CPU, float32 on CUDA).
    args = make_conv_inputs(seqlen=seqlen, dtype=widest_dtype(device))
    check_against_reference(args, device, activation="swish", return_final_states=True)


@pytest.mark.parametrize("width", [5, 8])
def test_wider_kernels(width, device):
    check_against_reference(make_conv_inputs(width=width, dtype=torch.float32), device, return_final_states=True)


@pytest.mark.parametrize("weight_dtype", [torch.float32, torch.bfloat16])
def test_float32_weights_with_low_precision_inputs(weight_dtype, device):
    args = make_conv_inputs(dtype=torch.float16, weight_dtype=weight_dtype)
    check_against_reference(args, device, activation="silu", return_final_states=True)


@pytest.mark.parametrize("option", ["bias", "initial_states"])
def test_optional_arguments_absent(option, device):
    args = make_conv_inputs(dtype=torch.float32)
    args[option] = None
    check_against_reference(args, device, activation="silu")


def test_gradcheck_float64():
    args = make_conv_inputs(batch=2, dim=3, seqlen=6, width=3)
    names = list(args)

    def fn(*tensors):
        return causal_conv1d_fn(**dict(zip(names, tensors, strict=True)), return_final_states=True, activation="silu")

    inputs = [v.requires_grad_(True) for v in args.values()]
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-8, rtol=1e-6)


def test_channel_last_input_is_accepted(device):
    # Mamba-2 passes x as a transposed (B, L, D) tensor: x.stride(1) == 1.
    args = make_conv_inputs(dtype=torch.float32, seqlen=50)
    x_cl = to_device(args["x"].transpose(1, 2).contiguous().transpose(1, 2), device)
    assert x_cl.stride(1) == 1
    out = causal_conv1d_fn(x_cl, args["weight"].to(device), args["bias"].to(device), activation="silu").cpu()
    want = causal_conv1d_ref(args["x"].double(), args["weight"].double(), args["bias"].double(), activation="silu")
    assert rel_l2(out, want) < TOLERANCE[torch.float32][0]


# --------------------------------------------------------------------------------------------------
# Packed sequences (seq_idx).


def packed_seq_idx(batch, seqlen, boundaries, padding_from):
    """(B, L) int32: sequence ids growing at `boundaries`, -1 (padding) from `padding_from` on."""
    seq = torch.zeros(batch, seqlen, dtype=torch.int32)
    for t in boundaries:
        seq[:, t:] += 1
    seq[:, padding_from:] = -1
    return seq


@pytest.mark.parametrize("activation", [None, "silu"])
def test_seq_idx_matches_reference(activation, device):
    args = make_conv_inputs(dtype=torch.float32, seqlen=300, width=4)
    args["initial_states"] = None
    args["seq_idx"] = packed_seq_idx(2, 300, boundaries=[1, 2, 40, 41, 259], padding_from=290)
    check_against_reference(args, device, activation=activation)


def test_packed_sequences_equal_separate_runs(device):
    # Independent of the masking logic: each packed sequence, run alone, gives the same outputs.
    dtype = widest_dtype(device)
    args = dict_to_device(make_conv_inputs(batch=1, dim=4, seqlen=60, width=4, dtype=dtype), device)
    boundaries, pad = [7, 8, 30], 52
    seq = packed_seq_idx(1, 60, boundaries, pad).to(device)
    out = causal_conv1d_fn(args["x"], args["weight"], args["bias"], seq_idx=seq, activation="silu").cpu()
    for start, end in zip([0, *boundaries], [*boundaries, pad], strict=True):
        alone = causal_conv1d_fn(args["x"][..., start:end], args["weight"], args["bias"], activation="silu")
        assert rel_l2(out[..., start:end], alone.cpu()) < (1e-14 if dtype == torch.float64 else 1e-6)
    assert torch.all(out[..., pad:] == 0)


# --------------------------------------------------------------------------------------------------
# Chaining: final states of one call are the initial states of the next.


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("split", [1, 2, 100])
def test_two_halves_chained_equal_one_run(dtype, split, device):
    skip_float64_on_cuda(dtype, device)
    args = dict_to_device(make_conv_inputs(dtype=dtype, seqlen=203, width=4), device)
    x = args["x"].detach().requires_grad_(True)
    w, b, init = args["weight"], args["bias"], args["initial_states"]
    whole, whole_final = causal_conv1d_fn(x, w, b, initial_states=init, return_final_states=True, activation="silu")
    first, mid = causal_conv1d_fn(
        x[..., :split], w, b, initial_states=init, return_final_states=True, activation="silu"
    )
    second, last = causal_conv1d_fn(
        x[..., split:], w, b, initial_states=mid, return_final_states=True, activation="silu"
    )
    assert torch.equal(torch.cat([first, second], dim=-1), whole)
    assert torch.equal(last, whole_final)
    # The gradient flows back through the chained state: same dx as the single run.
    g = torch.Generator().manual_seed(3)
    dout = torch.randn(whole.shape, generator=g, dtype=dtype).to(device)
    (dx_whole,) = torch.autograd.grad((whole * dout).sum(), x)
    (dx_chain,) = torch.autograd.grad((torch.cat([first, second], dim=-1) * dout).sum(), x)
    assert rel_l2(dx_chain.cpu(), dx_whole.cpu()) < TOLERANCE[dtype][1]


def test_final_states_out_is_written(device):
    args = dict_to_device(make_conv_inputs(dtype=torch.float32), device)
    buf = torch.full((2, 5, 3), float("nan"), device=device)
    out, final = causal_conv1d_fn(**args, return_final_states=True, final_states_out=buf)
    assert final is buf and torch.equal(buf, args["x"][..., -3:])


# --------------------------------------------------------------------------------------------------
# causal_conv1d_update: streaming steps equal the last steps of the full convolution.


@pytest.mark.parametrize("width", [2, 3, 4])
@pytest.mark.parametrize("new_steps", [None, 1, 3])
@pytest.mark.parametrize("state_len", ["width", "longer"])
def test_update_equals_last_steps_of_full_conv(width, new_steps, state_len, device):
    # new_steps None: x is (B, D), one step.
    n = new_steps or 1
    history = 10
    args = make_conv_inputs(batch=3, dim=6, seqlen=history + n, width=width, dtype=torch.float32)
    x, w, b = args["x"], args["weight"], args["bias"]
    full = causal_conv1d_fn(x, w, b, activation="silu")  # (B, D, history + n), on the CPU
    s = width - 1 if state_len == "width" else width + 4
    conv_state = x[..., history - s : history].clone().to(device)  # the last S inputs before the new steps
    new = x[..., history:] if new_steps else x[..., history]
    out = causal_conv1d_update(new.to(device), conv_state, w.to(device), b.to(device), activation="silu").cpu()
    want = full[..., history:] if new_steps else full[..., history]
    assert out.shape == new.shape
    assert rel_l2(out, want) < 1e-6
    assert torch.equal(conv_state.cpu(), x[..., history + n - s : history + n])


@pytest.mark.parametrize("new_steps", [1, 3])
def test_update_circular_buffer_and_state_indices(new_steps, device):
    # Batch row b lives in cache row rows[b] of a larger cache; its state is a circular buffer of S slots
    # whose write position is cache_seqlens[b] mod S. A row with index -1 is padding.
    width, state_len, history = 4, 5, 9
    args = make_conv_inputs(batch=3, dim=6, seqlen=history + new_steps, width=width, dtype=torch.float32)
    x, w, b = args["x"], args["weight"], args["bias"]
    full = causal_conv1d_fn(x, w, b, activation="silu")
    lens = torch.tensor([9, 12, 4], dtype=torch.int32)  # steps seen so far (mod S: 4, 2, 4)
    rows = torch.tensor([4, -1, 1], dtype=torch.int32)
    cache = torch.randn(6, 6, state_len)
    for bi in range(3):
        if rows[bi] < 0:
            continue
        for j in range(1, state_len + 1):  # the last S inputs before the new steps, at their slots
            cache[rows[bi], :, (int(lens[bi]) - j) % state_len] = x[bi, :, history - j]
    untouched = cache.clone()
    cache_ref = cache.clone()
    new = x[..., history:]
    on_device = dict_to_device(dict(x=new, conv_state=cache, weight=w, bias=b), device)
    out = causal_conv1d_update(
        **on_device, activation="silu", cache_seqlens=lens.to(device), conv_state_indices=rows.to(device)
    )
    out, cache = out.cpu(), on_device["conv_state"].cpu()
    want = causal_conv1d_update_ref(new, cache_ref, w, b, "silu", cache_seqlens=lens, conv_state_indices=rows)
    assert rel_l2(out, want) < 1e-6
    assert torch.equal(cache, cache_ref)
    for bi in (0, 2):
        assert rel_l2(out[bi], full[bi, :, history:]) < 1e-6
    assert torch.all(out[1] == 0)
    for r in (0, 2, 3, 5):  # rows no batch entry names stay as they were
        assert torch.equal(cache[r], untouched[r])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_update_matches_reference_dtypes(dtype, device):
    skip_float64_on_cuda(dtype, device)
    args = make_conv_inputs(batch=2, dim=7, seqlen=2, width=3, dtype=dtype)
    state = torch.randn(2, 7, 4).to(dtype)
    state_ref = state.clone()
    on_device = state.to(device)
    out = causal_conv1d_update(
        args["x"].to(device), on_device, args["weight"].to(device), args["bias"].to(device), "silu"
    )
    want = causal_conv1d_update_ref(args["x"], state_ref, args["weight"], args["bias"], "silu")
    assert out.dtype == dtype
    assert rel_l2(out.cpu(), want) < TOLERANCE[dtype][0]
    assert torch.equal(on_device.cpu(), state_ref)


def test_update_on_a_strided_state_view(device):
    # A state whose steps are not contiguous is updated through a copy, written back in place.
    args = dict_to_device(make_conv_inputs(batch=2, dim=3, seqlen=1, width=3, dtype=torch.float32), device)
    base = torch.randn(2, 4, 3).transpose(1, 2)  # (2, 3, 4) with stride 1 on the channel axis
    ref = base.clone()
    on_device = to_device(base, device)
    out = causal_conv1d_update(args["x"], on_device, args["weight"], args["bias"])
    want = causal_conv1d_update_ref(args["x"].cpu(), ref, args["weight"].cpu(), args["bias"].cpu())
    assert rel_l2(out.cpu(), want) < 1e-6 and torch.equal(on_device.cpu(), ref)


# --------------------------------------------------------------------------------------------------
# The lower ISA variants (picked at run time) and torch.library integration.


def check_conv_at_this_isa_level():
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        check_against_reference(make_conv_inputs(dtype=dtype, seqlen=300), activation="silu", return_final_states=True)
    args = make_conv_inputs(dtype=torch.float32, seqlen=80)
    args["initial_states"] = None
    args["seq_idx"] = packed_seq_idx(2, 80, boundaries=[5, 50], padding_from=70)
    check_against_reference(args, activation="silu")
    test_update_circular_buffer_and_state_indices(3, "cpu")


def test_baseline_isa_matches_reference():
    # The conv has two variants: AVX2 (run by every test above on an AVX2 or AVX-512 CPU) and the baseline.
    run_under_isa("baseline", __file__, ["check_conv_at_this_isa_level"])


@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("packed", [False, True])
def test_opcheck_forward(requires_grad, packed, device):
    args = make_conv_inputs(dtype=torch.float32)
    for v in args.values():
        v.requires_grad_(requires_grad)
    args = dict_to_device(args, device)
    seq = packed_seq_idx(2, 37, boundaries=[10], padding_from=30).to(device) if packed else None
    init = None if packed else args["initial_states"]
    op_args = (args["x"], args["weight"], args["bias"], seq, init, not packed, True)
    torch.library.opcheck(torch.ops.hamburg_mamba.causal_conv1d_fwd, op_args)


def test_opcheck_backward_and_update(device):
    args = dict_to_device(make_conv_inputs(dtype=torch.float32), device)
    dout = torch.randn_like(args["x"])
    dfinal = torch.randn_like(args["initial_states"])
    bwd_args = (args["x"], args["weight"], args["bias"], dout, None, args["initial_states"], dfinal, True)
    torch.library.opcheck(torch.ops.hamburg_mamba.causal_conv1d_bwd, bwd_args)
    state = torch.randn(4, 5, 3, device=device)
    lens = torch.tensor([3, 7], dtype=torch.int32, device=device)
    rows = torch.tensor([2, 0], dtype=torch.int32, device=device)
    update_args = (args["x"][..., :2].contiguous(), state, args["weight"], args["bias"], True, lens, rows)
    torch.library.opcheck(torch.ops.hamburg_mamba.causal_conv1d_update, update_args)


def test_torch_compile_fullgraph_matches_eager():
    args = make_conv_inputs(dtype=torch.float32)
    inputs = [v.requires_grad_(True) for v in args.values()]

    def f(x, weight, bias, initial_states):
        out, final = causal_conv1d_fn(
            torch.tanh(x), weight, bias, initial_states=initial_states, return_final_states=True, activation="silu"
        )
        return out * 2 + 1, final.square()

    compiled = torch.compile(f, fullgraph=True, backend="inductor")
    out_c, final_c = compiled(*inputs)
    out_e, final_e = f(*inputs)
    assert torch.allclose(out_c, out_e, rtol=1e-6, atol=1e-6)
    assert torch.allclose(final_c, final_e, rtol=1e-6, atol=1e-6)
    grads_c = torch.autograd.grad(out_c.sum() + final_c.sum(), inputs)
    grads_e = torch.autograd.grad(out_e.sum() + final_e.sum(), inputs)
    for gc, ge in zip(grads_c, grads_e, strict=True):
        assert rel_l2(gc, ge) < 1e-6


def test_exported_from_the_package():
    assert hamburg_mamba.causal_conv1d_fn is causal_conv1d_fn
    assert hamburg_mamba.causal_conv1d_update is causal_conv1d_update


# --------------------------------------------------------------------------------------------------
# Bad input: an error naming the argument and what was expected.


def _fn_case(change, **kwargs):
    args = make_conv_inputs(dtype=torch.float32)
    args.update(change(args))
    return lambda: causal_conv1d_fn(**args, **kwargs)


BAD_FN_INPUTS = {
    "x rank": (_fn_case(lambda a: dict(x=a["x"][0])), ValueError, "'x' must have non-empty shape (batch, dim, seqlen)"),
    "x dtype": (_fn_case(lambda a: dict(x=a["x"].int())), TypeError, "'x' must be float32, float16"),
    "weight shape": (_fn_case(lambda a: dict(weight=a["weight"][:3])), ValueError, "'weight' must have shape (dim,"),
    "width 1": (
        _fn_case(lambda a: dict(weight=a["weight"][:, :1])),
        ValueError,
        "width = weight.shape[1] must be in [2, 8]",
    ),
    "width 9": (
        _fn_case(lambda a: dict(weight=torch.zeros(5, 9), initial_states=None)),
        ValueError,
        "width = weight.shape[1] must be in [2, 8], got 9",
    ),
    "bias shape": (_fn_case(lambda a: dict(bias=a["bias"][:2])), ValueError, "'bias' must have shape (dim,)"),
    "bias dtype": (
        _fn_case(lambda a: dict(bias=a["bias"].double())),
        TypeError,
        "'bias' must have the dtype of 'weight'",
    ),
    "initial_states shape": (
        _fn_case(lambda a: dict(initial_states=a["initial_states"][..., :2])),
        ValueError,
        "'initial_states' must have shape (batch, dim, width - 1) = (2, 5, 3)",
    ),
    "initial_states dtype": (
        _fn_case(lambda a: dict(initial_states=a["initial_states"].half())),
        TypeError,
        "'initial_states' must have the dtype of 'x'",
    ),
    "seq_idx dtype": (
        _fn_case(lambda a: dict(seq_idx=torch.zeros(2, 37, dtype=torch.int64), initial_states=None)),
        TypeError,
        "'seq_idx' must be int32",
    ),
    "seq_idx shape": (
        _fn_case(lambda a: dict(seq_idx=torch.zeros(2, 36, dtype=torch.int32), initial_states=None)),
        ValueError,
        "'seq_idx' must have shape (batch, seqlen)",
    ),
    "seq_idx with initial_states": (
        _fn_case(lambda a: dict(seq_idx=torch.zeros(2, 37, dtype=torch.int32))),
        ValueError,
        "'seq_idx' and 'initial_states' cannot both be given",
    ),
    "seq_idx with final states": (
        _fn_case(
            lambda a: dict(seq_idx=torch.zeros(2, 37, dtype=torch.int32), initial_states=None), return_final_states=True
        ),
        ValueError,
        "'return_final_states' cannot be used with 'seq_idx'",
    ),
    "activation": (
        _fn_case(lambda a: {}, activation="relu"),
        ValueError,
        "'activation' must be None, 'silu' or 'swish'",
    ),
    "meta weight": (
        _fn_case(lambda a: dict(weight=a["weight"].to("meta"))),
        ValueError,
        "'weight' is on meta but 'x' is on cpu",
    ),
    "final_states_out shape": (
        _fn_case(lambda a: {}, return_final_states=True, final_states_out=torch.zeros(2, 5, 2)),
        ValueError,
        "'final_states_out' must have shape (batch, dim, width - 1)",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FN_INPUTS))
def test_bad_fn_inputs_name_the_argument(case):
    call, error, message = BAD_FN_INPUTS[case]
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value)


def _update_case(change, **kwargs):
    args = make_conv_inputs(batch=2, dim=5, seqlen=1, width=4, dtype=torch.float32)
    call = dict(x=args["x"][..., 0], conv_state=torch.zeros(2, 5, 3), weight=args["weight"], bias=args["bias"])
    call.update(change(call))
    return lambda: causal_conv1d_update(**call, **kwargs)


BAD_UPDATE_INPUTS = {
    "state too short": (
        _update_case(lambda a: dict(conv_state=torch.zeros(2, 5, 2))),
        ValueError,
        "'conv_state' must have shape (batch, dim, state_len) with dim = 5 and state_len >= width - 1 = 3",
    ),
    "state dtype": (
        _update_case(lambda a: dict(conv_state=torch.zeros(2, 5, 3).half())),
        TypeError,
        "'conv_state' must have the dtype of 'x'",
    ),
    "state rows": (
        _update_case(lambda a: dict(conv_state=torch.zeros(3, 5, 3))),
        ValueError,
        "'conv_state' must have 2 rows (the batch of 'x') without 'conv_state_indices'",
    ),
    "index range": (
        _update_case(lambda a: {}, conv_state_indices=torch.tensor([0, 2], dtype=torch.int32)),
        ValueError,
        "'conv_state_indices' holds 2 at 1, beyond the 2 rows of 'conv_state'",
    ),
    "index repeated": (
        _update_case(lambda a: {}, conv_state_indices=torch.tensor([1, 1], dtype=torch.int32)),
        ValueError,
        "'conv_state_indices' names row 1 twice",
    ),
    "cache_seqlens dtype": (
        _update_case(lambda a: {}, cache_seqlens=torch.tensor([1, 1])),
        TypeError,
        "'cache_seqlens' must be int32",
    ),
    "cache_seqlens shape": (
        _update_case(lambda a: {}, cache_seqlens=torch.tensor([1], dtype=torch.int32)),
        ValueError,
        "'cache_seqlens' must have shape (batch,)",
    ),
    "activation": (_update_case(lambda a: {}, activation="gelu"), ValueError, "'activation' must be None"),
}


@pytest.mark.parametrize("case", list(BAD_UPDATE_INPUTS))
def test_bad_update_inputs_name_the_argument(case):
    call, error, message = BAD_UPDATE_INPUTS[case]
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value)
