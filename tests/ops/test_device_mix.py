"""Tensors on different devices in one call are an error naming the argument and both devices, for every op and
every tensor argument (optional ones included), through the public wrappers and through torch.ops directly.

Glossary: B batch, D channels, L steps, N state size; M d_model, E d_inner, K d_conv, R dt_rank.

Without a GPU the mix tested is the meta device among CPU tensors: the dispatcher then runs the Meta (fake)
kernel, which must refuse rather than hand back uninitialised CPU memory. The CUDA + CPU mix is in
tests/test_selective_scan_cuda.py (test_tensors_on_different_devices_raise).
"""

from __future__ import annotations

import pytest
import torch
from scan_cases import block_step_args, make_inputs

from hamburg_mamba.ops import mamba_block_step, selective_scan_fn, selective_state_update

_ops = torch.ops.hamburg_mamba
META = torch.device("meta")


def mix_pattern(name: str, elsewhere: str) -> str:
    return rf"argument '{name}' is on {elsewhere} but '\w+' is on \w+; all tensors must be on the same device"


def moved(args: dict, name: str) -> dict:
    return {k: (v.to(META) if k == name else v) for k, v in args.items()}


def scan_args() -> dict:
    return make_inputs(batch=2, dim=8, seqlen=10, dstate=4, groups=2, dtype=torch.float32)


def fwd_op_args(args: dict, save: bool = True) -> tuple:
    return (
        args["u"],
        args["delta"],
        args["A"],
        args["B"],
        args["C"],
        args["D"],
        args["z"],
        args["delta_bias"],
        args["initial_state"],
        args["dt_scale"],
        True,
        save,
    )


@pytest.mark.parametrize("name", ["u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state", "dt_scale"])
def test_selective_scan_fwd_rejects_a_meta_argument(name):
    args = scan_args()
    with pytest.raises(ValueError, match=mix_pattern(name, "meta") if name != "u" else mix_pattern("delta", "cpu")):
        selective_scan_fn(**moved(args, name), delta_softplus=True)
    with pytest.raises(ValueError, match="all tensors must be on the same device"):
        _ops.selective_scan_fwd(*fwd_op_args(moved(args, name)))


def test_all_on_meta_still_gives_meta_shapes():
    args = {k: v.to(META) for k, v in scan_args().items()}
    out, last, checkpoints = _ops.selective_scan_fwd(*fwd_op_args(args))
    assert out.device == META and out.shape == (2, 8, 10) and last.shape == (2, 8, 4)
    assert checkpoints.shape == (2, 8, 1, 4)


@pytest.mark.parametrize(
    "name",
    [
        "dout",
        "dlast_state",
        "u",
        "delta",
        "A",
        "B",
        "C",
        "D",
        "z",
        "delta_bias",
        "initial_state",
        "dt_scale",
        "checkpoints",
    ],
)
def test_selective_scan_bwd_rejects_a_meta_argument(name):
    args = scan_args()
    out, last, checkpoints = _ops.selective_scan_fwd(*fwd_op_args(args))
    bwd = dict(
        dout=torch.randn_like(out),
        dlast_state=torch.randn_like(last),
        u=args["u"],
        delta=args["delta"],
        A=args["A"],
        B=args["B"],
        C=args["C"],
        D=args["D"],
        z=args["z"],
        delta_bias=args["delta_bias"],
        initial_state=args["initial_state"],
        dt_scale=args["dt_scale"],
        checkpoints=checkpoints,
    )
    reference_moved = name == "u"
    with pytest.raises(ValueError, match=mix_pattern("dout", "cpu") if reference_moved else mix_pattern(name, "meta")):
        _ops.selective_scan_bwd(**moved(bwd, name), delta_softplus=True)


def test_autograd_through_a_meta_argument_is_rejected():
    args = make_inputs(batch=2, dim=8, seqlen=10, dstate=4, dtype=torch.float32, requires_grad=True)
    args["initial_state"] = args["initial_state"].detach().to(META).requires_grad_(True)
    with pytest.raises(ValueError, match=mix_pattern("initial_state", "meta")):
        selective_scan_fn(**args, delta_softplus=True)


def state_update_args() -> dict:
    args = scan_args()
    return dict(
        state=args["initial_state"].clone(),
        x=args["u"][..., 0],
        dt=args["delta"][..., 0],
        A=args["A"],
        B=args["B"][..., 0],
        C=args["C"][..., 0],
        D=args["D"],
        z=args["z"][..., 0],
        dt_bias=args["delta_bias"],
        dt_scale=args["dt_scale"][:, 0],
    )


@pytest.mark.parametrize("name", ["state", "x", "dt", "A", "B", "C", "D", "z", "dt_bias", "dt_scale"])
def test_selective_state_update_rejects_a_meta_argument(name):
    args = state_update_args()
    state_before = args["state"].clone()
    pattern = mix_pattern("state", "cpu") if name == "x" else mix_pattern(name, "meta")
    with torch.no_grad(), pytest.raises(ValueError, match=pattern):
        selective_state_update(**moved(args, name), dt_softplus=True)
    if name != "state":
        assert torch.equal(args["state"], state_before)


BLOCK_STEP_TENSORS = [
    "x",
    "norm_weight",
    "in_proj_weight",
    "conv_state",
    "conv_weight",
    "conv_bias",
    "x_proj_weight",
    "dt_proj_weight",
    "dt_proj_bias",
    "A",
    "D",
    "ssm_state",
    "dt_scale",
    "out_proj_weight",
]


@pytest.mark.parametrize("name", BLOCK_STEP_TENSORS)
def test_mamba_block_step_rejects_a_meta_argument(name):
    args = block_step_args()
    pattern = mix_pattern("norm_weight", "cpu") if name == "x" else mix_pattern(name, "meta")
    with pytest.raises(ValueError, match=pattern):
        mamba_block_step(**moved(args, name))
