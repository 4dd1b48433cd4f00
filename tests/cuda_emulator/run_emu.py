"""Runs the emulated CUDA kernels (build_emu.py) against the float64 reference; one line per case.

Builds the emulator first (EMU_THREADS, EMU_ARCH, EMU_FAST_EXP, EMU_BIAS, EMU_OUT as in build_emu.py; an
unchanged build is reused). Usage: EMU_THREADS=64 python tests/cuda_emulator/run_emu.py multi
"""

import itertools
import os
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
# Run as a script from anywhere: the repository root (hamburg_mamba) and this folder (build_emu) on the path.
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))
from build_emu import EmulatorConfig, build  # noqa: E402

from hamburg_mamba.ops.reference import selective_scan_ref  # noqa: E402

emu = build(EmulatorConfig.from_env(), Path(os.environ.get("EMU_OUT", "build/emu")))


def rel(a, b):
    a = a.double()
    b = b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def make(Bsz, D, L, N, G, dtype, has_D, has_z, has_bias, has_init, has_scale, softplus, seed=0, pad=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g)

    u = r(Bsz, D, L).to(dtype)
    delta = (0.5 * r(Bsz, D, L) - 1.0).to(dtype) if softplus else (0.1 * r(Bsz, D, L).abs() + 0.01).to(dtype)
    A = -(torch.rand(D, N, generator=g) * 2 + 0.1)
    Bm = r(Bsz, G, N, L).to(dtype) if G > 0 else r(Bsz, N, L).to(dtype)
    Cm = r(Bsz, G, N, L).to(dtype) if G > 0 else r(Bsz, N, L).to(dtype)
    Dv = r(D) if has_D else None
    z = r(Bsz, D, L).to(dtype) if has_z else None
    bias = 0.3 * r(D) if has_bias else None
    init = r(Bsz, D, N) if has_init else None
    scale = None
    if has_scale:
        scale = torch.rand(Bsz, L, generator=g) * 2
        if pad:
            scale[:, L - pad :] = 0
    return u, delta, A, Bm, Cm, Dv, z, bias, init, scale


def check(
    Bsz,
    D,
    L,
    N,
    G,
    dtype=torch.float32,
    has_D=True,
    has_z=True,
    has_bias=True,
    has_init=True,
    has_scale=True,
    softplus=True,
    dlast=True,
    pad=0,
    tol_out=1e-5,
    tol_grad=1e-4,
):
    args = make(Bsz, D, L, N, G, dtype, has_D, has_z, has_bias, has_init, has_scale, softplus, pad=pad)
    u, delta, A, Bm, Cm, Dv, z, bias, init, scale = args
    t = time.time()
    out, last, chk = emu.fwd(u, delta, A, Bm, Cm, Dv, z, bias, init, scale, softplus, True)
    # reference in float64 with autograd
    leaves = [None if x is None else x.double().requires_grad_(True) for x in (u, delta, A, Bm, Cm, Dv, z, bias, init)]
    ru, rdelta, rA, rB, rC, rD, rz, rbias, rinit = leaves
    rout, rlast = selective_scan_ref(
        ru, rdelta, rA, rB, rC, rD, rz, rbias, softplus, True, rinit, None if scale is None else scale.double()
    )
    errs = {"out": rel(out, rout), "last": rel(last, rlast)}
    # checkpoints vs the reference states
    gen = torch.Generator().manual_seed(1)
    dout = torch.randn(out.shape, generator=gen).to(dtype)
    dl = torch.randn(last.shape, generator=gen) if dlast else None
    grads = emu.bwd(dout, dl, u, delta, A, Bm, Cm, Dv, z, bias, init, scale, chk, softplus)
    loss = (rout * dout.double()).sum() + ((rlast * dl.double()).sum() if dlast else 0)
    names = ["du", "ddelta", "dA", "dB", "dC", "dD", "dz", "dbias", "dinit"]
    ins = [ru, rdelta, rA, rB, rC, rD, rz, rbias, rinit]
    want = torch.autograd.grad(loss, [x for x in ins if x is not None])
    it = iter(want)
    for nm, x, gk in zip(names, ins, grads, strict=True):
        if x is None:
            continue
        w = next(it)
        errs[nm] = rel(gk, w)
    bad = {k: v for k, v in errs.items() if v > (tol_out if k in ("out", "last") else tol_grad)}
    flags = f"D{int(has_D)}z{int(has_z)}b{int(has_bias)}i{int(has_init)}s{int(has_scale)}sp{int(softplus)}"
    tag = f"B{Bsz} D{D} L{L} N{N} G{G} {str(dtype)[6:]} {flags} pad{pad}"
    print(
        ("FAIL " if bad else "ok   ") + tag,
        f"{time.time() - t:.1f}s",
        " ".join(f"{k}={v:.1e}" for k, v in errs.items()),
        flush=True,
    )
    return chk, args, out, last


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "quick"
    if which == "quick":
        check(1, 2, 7, 4, 0)
        check(2, 4, 70, 3, 2)
    if which == "n":
        for N in (1, 16, 33):
            check(1, 2, 100, N, 0)
    if which == "opts":
        for flags in itertools.product([0, 1], repeat=6):
            hD, hz, hb, hi, hs, sp = flags
            check(
                1, 2, 37, 3, 1, has_D=hD, has_z=hz, has_bias=hb, has_init=hi, has_scale=hs, softplus=sp, dlast=bool(hi)
            )
    if which == "multi":  # for EMU_THREADS=64: K=4 up to L=256 (chunk 256), K=16 beyond (chunk 1024)
        for L, N, G in [
            (1, 1, 0),
            (2, 3, 1),
            (64, 5, 2),
            (255, 4, 2),
            (256, 2, 0),
            (257, 3, 2),
            (1024, 2, 0),
            (1025, 3, 2),
            (2500, 2, 1),
            (3000, 1, 0),
        ]:
            check(2, 4, L, N, G)
        check(2, 4, 2500, 3, 2, pad=900)
    if which == "half":
        for dt in (torch.float16, torch.bfloat16):
            check(2, 4, 300, 4, 2, dtype=dt, tol_out=1e-2, tol_grad=2e-2)
            check(1, 2, 1100, 3, 0, dtype=dt, tol_out=1e-2, tol_grad=2e-2)
    if which == "nbig":
        check(1, 2, 40, 200, 1)
    if which == "claims":
        ops = torch.ops.hamburg_mamba
        # checkpoints vs CPU op
        for L in [int(x) for x in os.environ.get("CHK_LENS", "1,63,64,65,300,1100").split(",")]:
            a = make(2, 3, L, 5, 0, torch.float32, True, True, True, True, True, True, seed=L)
            cpu = ops.selective_scan_fwd(*a, True, True)
            em = emu.fwd(*a, True, True)
            print(
                "chk", L, tuple(em[2].shape), rel(em[2], cpu[2]), rel(em[1], cpu[1]), torch.equal(em[2][:, :, 0], a[8])
            )
        # padded steps: bitwise equal to the truncated run
        for L, pad in [
            (int(x.split(":")[0]), int(x.split(":")[1])) for x in os.environ.get("PADS", "300:100,1000:300").split(",")
        ]:
            a = list(make(2, 4, L, 3, 2, torch.float32, True, True, True, True, True, True, seed=pad))
            a[9][:, L - pad :] = 0
            v = L - pad
            short = [
                t[..., :v].contiguous() if (t is not None and i in (0, 1, 3, 4, 6, 9)) else t for i, t in enumerate(a)
            ]
            op, lp, cp = emu.fwd(*a, True, True)
            os_, ls, cs = emu.fwd(*short, True, True)
            g = torch.Generator().manual_seed(2)
            dout = torch.randn(op.shape, generator=g)
            dout[..., v:] = 0
            dl = torch.randn(lp.shape, generator=g)
            gp = emu.bwd(dout, dl, *a, cp, True)
            gs = emu.bwd(dout[..., :v].contiguous(), dl, *short, cs, True)
            res = [torch.equal(lp, ls), torch.equal(op[..., :v], os_)]
            res += [torch.equal(gp[i][..., :v], gs[i]) for i in (0, 1, 6)] + [torch.equal(gp[8], gs[8])]
            res += [int(torch.count_nonzero(gp[i][..., v:])) == 0 for i in (1, 3, 4)]
            res += [
                torch.allclose(gp[i][..., :v] if i in (3, 4) else gp[i], gs[i], rtol=1e-6, atol=1e-6)
                for i in (2, 3, 4, 5, 7)
            ]
            print("pad", L, pad, res, [rel(gp[i][..., :v] if i in (3, 4) else gp[i], gs[i]) for i in (2, 3, 4, 5, 7)])
        # misaligned / strided vs contiguous
        L = 777
        a = list(make(2, 4, L, 3, 2, torch.float32, True, True, True, True, True, True, seed=9))
        o1 = emu.fwd(*a, True, True)
        b = list(a)
        uw = torch.zeros(2, 8, L + 1)
        uw[:, ::2, 1:] = a[0]
        b[0] = uw[:, ::2, 1:]
        Bw = torch.zeros(2, 2, 3, L + 3)
        Bw[..., 3:] = a[3]
        b[3] = Bw[..., 3:]
        b[1] = a[1].transpose(1, 2).contiguous().transpose(1, 2)
        b[6] = a[6].transpose(0, 1).contiguous().transpose(0, 1)
        o2 = emu.fwd(*b, True, True)
        dout = torch.randn(o1[0].shape)
        dl = torch.randn(o1[1].shape)
        g1 = emu.bwd(dout, dl, *a, o1[2], True)
        g2 = emu.bwd(dout, dl, *b, o2[2], True)
        print(
            "odd",
            [torch.equal(x, y) for x, y in zip(o1, o2, strict=True)],
            [torch.allclose(x, y, rtol=1e-6, atol=1e-6) for x, y in zip(g1, g2, strict=True)],
        )
        # state update step by step vs scan
        L = 12
        a = make(2, 4, L, 16, 2, torch.float32, True, True, True, True, True, True, seed=2)
        out, last, _ = emu.fwd(*a, True, False)
        st = a[8].clone()
        ys = []
        for t in range(L):
            ys.append(
                emu.update(
                    st,
                    a[0][..., t],
                    a[1][..., t],
                    a[2],
                    a[3][..., t],
                    a[4][..., t],
                    a[5],
                    a[6][..., t],
                    a[7],
                    a[9][:, t],
                    True,
                )
            )
        print("update", rel(torch.stack(ys, -1), out), rel(st, last))
        st0 = a[8].clone()
        sc = a[9][:, 0].clone()
        sc[0] = 0
        emu.update(
            st0, a[0][..., 0], a[1][..., 0], a[2], a[3][..., 0], a[4][..., 0], a[5], a[6][..., 0], a[7], sc, True
        )
        print("update zero step exact", torch.equal(st0[0], a[8][0]), not torch.equal(st0[1], a[8][1]))
    if which == "grid":
        for L in (1, 2, 7, 64, 255, 2049, 4500):
            for N in (1, 16):
                check(2, 4, L, N, 2)
        check(1, 2, 300, 64, 1)
        check(1, 2, 100, 256, 1)
        check(1, 2, 2049, 64, 0)
    if which == "long":
        check(2, 4, 4500, 16, 2)
        check(2, 4, 4500, 16, 2, softplus=False)
        check(1, 4, 8000, 4, 1, has_scale=False)
    if which == "memory":  # long memory: steps ~0.005, a = exp(-0.005 |A|) close to 1
        g = torch.Generator().manual_seed(7)
        Bsz, D, L, N = 1, 4, 5000, 4
        u = torch.randn(Bsz, D, L, generator=g)
        delta = torch.rand(Bsz, D, L, generator=g) * 0.01
        A = -(torch.rand(D, N, generator=g) + 0.05)
        Bm = torch.randn(Bsz, N, L, generator=g)
        Cm = torch.randn(Bsz, N, L, generator=g)
        out, last, chk = emu.fwd(u, delta, A, Bm, Cm, None, None, None, None, None, False, True)
        ro, rl = selective_scan_ref(
            u.double(), delta.double(), A.double(), Bm.double(), Cm.double(), return_last_state=True
        )
        print("memory", rel(out, ro), rel(last, rl))
