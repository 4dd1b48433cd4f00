"""Helpers shared by the op tests: the devices they run on, inputs in a trained Mamba's ranges, the float64
reference comparison, and a runner that repeats test functions under each capped CPU ISA level.

Glossary: B batch, D channels, L steps, N state size, G groups.

The CPU ISA level (AVX-512, AVX2, baseline) is picked once per process, and HAMBURG_MAMBA_CPU_ISA caps it, so
the lower levels run in a subprocess each.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from hamburg_mamba.ops import selective_scan_fn, selective_scan_ref

CUDA_KERNELS = torch.cuda.is_available() and torch._C._dispatch_has_kernel_for_dispatch_key(
    "hamburg_mamba::selective_scan_fwd", "CUDA"
)
# The `device` fixture's values (tests/ops/conftest.py); CUDA alone for the checks of CUDA-only behaviour.
CUDA = pytest.param(
    "cuda",
    marks=[
        pytest.mark.cuda,
        pytest.mark.skipif(not CUDA_KERNELS, reason="needs a CUDA device and hamburg_mamba's CUDA kernels"),
    ],
)
DEVICES = ["cpu", CUDA]

# Levels below the machine's best; on a CPU without AVX-512 the "avx2" cap is the best level itself.
LOWER_ISA_LEVELS = ("avx2", "baseline")

OPTIONAL = ("D", "z", "delta_bias", "initial_state", "dt_scale")
GRAD_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state")

# (output, gradients) relative L2 tolerances against the float64 reference on the same rounded inputs.
TOLERANCE = {
    torch.float64: (1e-12, 1e-11),
    torch.float32: (1e-5, 1e-4),
    torch.float16: (2e-3, 5e-3),
    torch.bfloat16: (1e-2, 2e-2),
}
# The CUDA kernels' own bounds where they are tighter: their float16 gradients are bounded by rounding du, ddelta
# and dz to float16 (2^-11 per element), the float32 sums being exact to about 1e-6.
CUDA_TOLERANCE = {**TOLERANCE, torch.float16: (2e-3, 3e-3)}


def tolerance(dtype: torch.dtype, device: str) -> tuple[float, float]:
    """(output, gradients) relative L2 tolerances of the scan on `device`."""
    return (CUDA_TOLERANCE if device == "cuda" else TOLERANCE)[dtype]


def widest_dtype(device: str) -> torch.dtype:
    """The most precise input dtype of the kernels on `device`: float64 on the CPU, float32 on CUDA."""
    return torch.float64 if device == "cpu" else torch.float32


def skip_float64_on_cuda(dtype: torch.dtype, device: str) -> None:
    if dtype == torch.float64 and device == "cuda":
        pytest.skip("float64 is a CPU-only dtype of the kernels (test_cuda_kernels_refuse_float64)")


def to_device(t, device: str):
    """`t` on `device` with its shape, strides and storage offset (a view into a copy of its whole storage), as a
    leaf that requires grad as `t` does; `t` itself when it is on `device` already."""
    if not isinstance(t, torch.Tensor) or t.device.type == device:
        return t
    storage = t.detach().as_strided((t.untyped_storage().nbytes() // t.element_size(),), (1,), 0)
    moved = storage.to(device).as_strided(t.shape, t.stride(), t.storage_offset())
    return moved.requires_grad_(t.requires_grad)


def dict_to_device(args: dict, device: str) -> dict:
    return {k: to_device(v, device) for k, v in args.items()}


def make_inputs(
    batch=2,
    dim=20,
    seqlen=33,
    dstate=8,
    groups=2,
    dtype=torch.float64,
    optional=OPTIONAL,
    softplus=True,
    seed=0,
    requires_grad=False,
):
    """Random inputs in the ranges a trained Mamba sees (A < 0, steps of order 0.01-1)."""
    g = torch.Generator().manual_seed(seed)
    pdt = torch.float64 if dtype == torch.float64 else torch.float32

    def rnd(*shape, scale=1.0, dt=dtype):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dt)

    bc_shape = (batch, dstate, seqlen) if groups is None else (batch, groups, dstate, seqlen)
    args = {
        "u": rnd(batch, dim, seqlen),
        "delta": rnd(batch, dim, seqlen, scale=0.5) - (1.0 if softplus else -1.5),
        "A": -torch.rand(dim, dstate, generator=g, dtype=torch.float64).mul(3).add(0.05).to(pdt),
        "B": rnd(*bc_shape),
        "C": rnd(*bc_shape),
    }
    if not softplus:
        args["delta"] = args["delta"].abs()
    extra = {
        "D": rnd(dim, dt=pdt),
        "z": rnd(batch, dim, seqlen),
        "delta_bias": rnd(dim, scale=0.2, dt=pdt),
        "initial_state": rnd(batch, dim, dstate, dt=pdt),
        "dt_scale": torch.rand(batch, seqlen, generator=g, dtype=torch.float64).mul(2).to(pdt),
    }
    args.update({k: v for k, v in extra.items() if k in optional})
    if requires_grad:
        for k, v in args.items():
            if k != "dt_scale":
                v.requires_grad_(True)
    return args


def as_float64(args):
    return {k: v.detach().double().requires_grad_(v.requires_grad) for k, v in args.items()}


def rel_l2(x, ref):
    x, ref = x.double(), ref.double()
    return ((x - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def run_with_grads(fn, args, softplus, dout, dlast):
    """out, last_state and the gradients of <out, dout> + <last_state, dlast> (dlast None: no such term), on the
    CPU; `args` on any device."""
    out, last = fn(**args, delta_softplus=softplus, return_last_state=True)
    loss = (out.double() * dout.to(out.device)).sum()
    if dlast is not None:
        loss = loss + (last.double() * dlast.to(last.device)).sum()
    names = [k for k in GRAD_NAMES if k in args]
    grads = torch.autograd.grad(loss, [args[k] for k in names])
    return out.cpu(), last.cpu(), {k: v.cpu() for k, v in zip(names, grads, strict=True)}


def check_against_reference(args, softplus=True, device="cpu", with_dlast=True):
    """Compares out, last_state and every gradient of the op on `device` with the float64 reference on the same
    (CPU) inputs; with_dlast=False leaves the last state out of the loss."""
    dtype = args["u"].dtype
    tol_out, tol_grad = tolerance(dtype, device)
    ref_args = as_float64(args)
    g = torch.Generator().manual_seed(1)
    dout = torch.randn(args["u"].shape, generator=g, dtype=torch.float64)
    dlast = torch.randn(args["u"].shape[0], args["u"].shape[1], args["A"].shape[1], generator=g, dtype=torch.float64)
    dlast = dlast if with_dlast else None
    out, last, grads = run_with_grads(selective_scan_fn, dict_to_device(args, device), softplus, dout, dlast)
    rout, rlast, rgrads = run_with_grads(selective_scan_ref, ref_args, softplus, dout, dlast)
    assert out.dtype == dtype and out.shape == args["u"].shape
    assert last.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert rel_l2(out, rout) < tol_out, f"out: {rel_l2(out, rout):.2e}"
    assert rel_l2(last, rlast) < tol_out, f"last_state: {rel_l2(last, rlast):.2e}"
    for name, grad in grads.items():
        assert grad.dtype == args[name].dtype and grad.shape == args[name].shape, name
        err = rel_l2(grad, rgrads[name])
        assert err < tol_grad, f"d{name}: {err:.2e}"


def block_step_args(batch=2, d_model=6, d_inner=20, d_conv=3, dt_rank=2, dstate=4, seed=0) -> dict:
    """Keyword arguments of `mamba_block_step` (float32), in the ranges of a trained block."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.3):
        return torch.randn(*shape, generator=g) * scale

    return dict(
        x=rnd(batch, d_model, scale=1.0),
        norm_weight=1 + rnd(d_model),
        norm_eps=1e-5,
        in_proj_weight=rnd(2 * d_inner, d_model),
        conv_state=rnd(batch, d_inner, d_conv, scale=1.0),
        conv_weight=rnd(d_inner, d_conv),
        conv_bias=rnd(d_inner),
        x_proj_weight=rnd(dt_rank + 2 * dstate, d_inner),
        dt_proj_weight=rnd(d_inner, dt_rank),
        dt_proj_bias=rnd(d_inner) - 2.0,
        A=-torch.rand(d_inner, dstate, generator=g) * 2 - 0.1,
        D=rnd(d_inner),
        ssm_state=rnd(batch, d_inner, dstate),
        dt_scale=torch.rand(batch, generator=g) * 2,
        out_proj_weight=rnd(d_model, d_inner),
    )


def run_under_isa(isa: str, test_file: str, names: list[str], timeout: float = 300) -> str:
    """Calls the functions `names` of `test_file` in a fresh interpreter with the CPU kernels capped at `isa`;
    raises with the child's stderr when one fails. Returns the level the child ran at."""
    module = os.path.splitext(os.path.basename(test_file))[0]
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {os.path.dirname(os.path.abspath(test_file))!r})
        import hamburg_mamba
        import {module} as tests
        assert hamburg_mamba.cpu_isa() in ({isa!r}, "baseline"), hamburg_mamba.cpu_isa()
        for name in {names!r}:
            getattr(tests, name)()
        print("ok", hamburg_mamba.cpu_isa())
        """
    )
    env = dict(os.environ, HAMBURG_MAMBA_CPU_ISA=isa)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0 and proc.stdout.startswith("ok"), proc.stderr[-3000:]
    return proc.stdout.split()[1]
