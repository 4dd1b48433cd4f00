"""Property-based tests of `selective_scan_fn` against the float64 reference `selective_scan_ref`.

Glossary: B batch, D channels, L steps, N state size, G groups (D % G == 0).

Hypothesis draws the shapes (including a 16-lane channel block and its tail, and L across the checkpoint
interval 64), every optional input, the dtype, the memory layout of each tensor (contiguous, padded rows,
non-unit last stride, stride 0 from expand) and NaN / inf entries; torch draws the values from a seed
Hypothesis picks (the ranges of tests/ops/scan_cases.make_inputs). Derandomized with a fixed number of
examples, so every run tests the same cases in bounded time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scan_cases import GRAD_NAMES, OPTIONAL, make_inputs

from hamburg_mamba.ops import selective_scan_fn, selective_scan_ref

PROFILE = "hamburg_mamba_ops"
settings.register_profile(
    PROFILE,
    derandomize=True,
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROPERTIES = settings.get_profile(PROFILE)

DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
LAYOUTS = ("contiguous", "padded_rows", "strided", "expanded")
# Relative L2 error (over the finite entries) allowed against the float64 reference on the same rounded inputs,
# (outputs, gradients), with dout exact in the dtype. Measured over this file's examples, at most: float64
# 3.4e-16 / 4.7e-15; float32 1.6e-7 / 6.1e-6; float16 3.1e-4 / 4.3e-4; bfloat16 2.9e-3 / 3.6e-3 (rounding of
# the stored half outputs, unit roundoff 2^-11 and 2^-8). Bounds 2x or more above, all below 1 %.
TOLERANCE = {
    torch.float64: (1e-12, 1e-12),
    torch.float32: (1e-5, 3e-5),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (8e-3, 8e-3),
}
BATCHED = {"u", "delta", "z", "B", "C", "initial_state", "dt_scale"}


@dataclass
class Case:
    batch: int
    dim: int
    seqlen: int
    dstate: int
    groups: int | None  # None: B and C of shape (B, N, L)
    dtype: torch.dtype
    optional: tuple[str, ...]
    softplus: bool
    return_last_state: bool
    layouts: dict[str, str]
    seed: int
    # (argument, flat index, value) entries written into the inputs.
    specials: list[tuple[str, int, float]] = field(default_factory=list)


@st.composite
def cases(draw, specials: bool = False) -> Case:
    groups = draw(st.sampled_from([None, 1, 2, 3]))
    per_group = draw(st.sampled_from([1, 3, 16, 19]))
    optional = tuple(name for name in OPTIONAL if draw(st.booleans()))
    names = ["u", "delta", "A", "B", "C", *optional]
    case = Case(
        batch=draw(st.integers(1, 3)),
        dim=per_group * (groups or 1),
        seqlen=draw(st.sampled_from([1, 5, 64, 70])),
        dstate=draw(st.sampled_from([1, 4, 17])),
        groups=groups,
        dtype=draw(st.sampled_from(DTYPES)),
        optional=optional,
        softplus=draw(st.booleans()),
        return_last_state=draw(st.booleans()),
        layouts={name: draw(st.sampled_from(LAYOUTS)) for name in names},
        seed=draw(st.integers(0, 2**31 - 1)),
    )
    if specials:
        for _ in range(draw(st.integers(1, 3))):
            # dt_scale is elapsed time: a negative, NaN or infinite one is refused (test_bad_inputs_name_the_argument).
            name = draw(st.sampled_from([n for n in names if n != "dt_scale"]))
            value = draw(st.sampled_from([math.nan, math.nan, math.inf, -math.inf]))
            case.specials.append((name, draw(st.integers(0, 10**6)), value))
    return case


def leaves(case: Case) -> dict[str, torch.Tensor]:
    """The inputs as tensors owning their values (an expanded argument's leaf has batch size 1)."""
    args = make_inputs(
        batch=case.batch,
        dim=case.dim,
        seqlen=case.seqlen,
        dstate=case.dstate,
        groups=case.groups,
        dtype=case.dtype,
        optional=case.optional,
        softplus=case.softplus,
        seed=case.seed,
    )
    for name, layout in case.layouts.items():
        if layout == "expanded" and name in BATCHED:
            args[name] = args[name][:1].clone()
    for name, index, value in case.specials:
        flat = args[name].view(-1)
        flat[index % flat.numel()] = value
    return args


def laid_out(name: str, leaf: torch.Tensor, layout: str, batch: int) -> torch.Tensor:
    """The argument passed to the op: the leaf's values in the drawn layout (differentiable back to the leaf)."""
    if layout == "padded_rows" and leaf.dim() >= 2:  # rows of the last dimension sit 3 elements apart
        return F.pad(leaf, (0, 3))[..., : leaf.shape[-1]]
    if layout == "strided":  # stride 2 along the last dimension
        return torch.stack([leaf, leaf], dim=-1).flatten(-2)[..., ::2]
    if layout == "expanded" and name in BATCHED:  # stride 0 over the batch
        return leaf.expand(batch, *leaf.shape[1:])
    return leaf


def run(fn, case: Case, leaf_values: dict[str, torch.Tensor], dout: torch.Tensor, dlast: torch.Tensor, float64: bool):
    """out, last_state and the gradients of <out, dout> (+ <last_state, dlast>) with respect to the leaves
    (in their own dtypes, or all in float64 for the reference)."""
    leaf = {k: (v.double() if float64 else v).detach().requires_grad_(k != "dt_scale") for k, v in leaf_values.items()}
    args = {k: laid_out(k, v, case.layouts.get(k, "contiguous"), case.batch) for k, v in leaf.items()}
    result = fn(**args, delta_softplus=case.softplus, return_last_state=case.return_last_state)
    out, last = result if case.return_last_state else (result, None)
    loss = (out.double() * dout).sum()
    if last is not None:
        loss = loss + (last.double() * dlast).sum()
    names = [k for k in GRAD_NAMES if k in leaf]
    grads = torch.autograd.grad(loss, [leaf[k] for k in names], allow_unused=True)
    return out, last, dict(zip(names, grads, strict=True))


def finite_rel_l2(got: torch.Tensor, want: torch.Tensor) -> float:
    keep = want.isfinite()
    got, want = got.detach().double()[keep], want.detach().double()[keep]
    return ((got - want).norm() / want.norm().clamp_min(1e-30)).item()


def check(case: Case) -> None:
    values = leaves(case)
    g = torch.Generator().manual_seed(case.seed + 1)
    dout = torch.randn(case.batch, case.dim, case.seqlen, generator=g, dtype=torch.float64)
    dout = dout.to(case.dtype).double()  # exact in the dtype: autograd hands the kernel dout in the dtype of out
    dlast = torch.randn(case.batch, case.dim, case.dstate, generator=g, dtype=torch.float64)
    out, last, grads = run(selective_scan_fn, case, values, dout, dlast, float64=False)
    rout, rlast, rgrads = run(selective_scan_ref, case, values, dout, dlast, float64=True)
    tol_out, tol_grad = TOLERANCE[case.dtype]
    outputs = [("out", out, rout)] + ([("last_state", last, rlast)] if case.return_last_state else [])
    assert out.dtype == case.dtype and out.shape == (case.batch, case.dim, case.seqlen)
    for name, got, want in outputs:
        # NaN in gives NaN exactly where the reference has NaN; infinities where it has them.
        assert torch.equal(got.isnan(), want.isnan()), f"{name}: NaN pattern differs from the reference"
        assert torch.equal(got.isinf(), want.isinf()), f"{name}: inf pattern differs from the reference"
        assert finite_rel_l2(got, want) < tol_out, f"{name}: {finite_rel_l2(got, want):.2e}"
    for name, got in grads.items():
        want = rgrads[name]
        assert got.dtype == values[name].dtype and got.shape == values[name].shape, name
        # Gradients: with NaN inputs only, NaN exactly where the reference has NaN. An infinity makes products
        # inf * 0 whose result depends on the order of the factors (the kernels factor the step out of sums
        # over the state, the reference multiplies per state index), so NaN and inf may trade places; an
        # infinite step (delta, delta_bias, dt_scale) may even meet inf * 0 in one and not the other, so then
        # only the entries finite in both are compared.
        infinities = [arg for arg, _, value in case.specials if math.isinf(value)]
        if not infinities:
            assert torch.equal(got.isnan(), want.isnan()), f"d{name}: NaN pattern differs"
        if not set(infinities) & {"delta", "delta_bias", "dt_scale"}:
            assert torch.equal(got.isfinite(), want.isfinite()), f"d{name}: non-finite pattern differs"
        both = got.isfinite() & want.isfinite()
        got, want = got[both], want[both]
        assert finite_rel_l2(got, want) < tol_grad, f"d{name}: {finite_rel_l2(got, want):.2e}"


@PROPERTIES
@given(cases())
def test_matches_reference_on_random_shapes_options_dtypes_and_layouts(case):
    check(case)


# Found by this test: without D the kernels added 0 * u, which made an infinite u NaN.
INFINITE_U_WITHOUT_D = Case(
    batch=1,
    dim=1,
    seqlen=1,
    dstate=1,
    groups=None,
    dtype=torch.float32,
    optional=(),
    softplus=False,
    return_last_state=False,
    layouts={},
    seed=0,
    specials=[("u", 0, math.inf)],
)


@settings(PROPERTIES, max_examples=150)
@given(cases(specials=True))
@example(INFINITE_U_WITHOUT_D)
def test_nan_and_inf_inputs_propagate_like_the_reference(case):
    check(case)
