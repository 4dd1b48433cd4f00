"""Benchmark of hamburg_mamba.data: generation speed, MEDS write/read, connector and batch throughput.

    python bench/bench_data.py                # demo cohort + about 10 M events (all 14 hospitals)
    python bench/bench_data.py --quick        # demo cohort only

Peak memory is the process's maximum resident set size (ru_maxrss) after each phase, so it is cumulative.
The 1-minute load average is printed with every phase: the machine is shared, so compare ratios within a run.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

from hamburg_mamba.data.calibration import calibration_table, markdown
from hamburg_mamba.data.connector import connect_hamburg_data
from hamburg_mamba.data.meds_io import write_synthetic
from hamburg_mamba.data.synthetic import ED_VISITS_2016, SyntheticConfig, generate_synthetic

# All 14 hospitals at this scale: the project's 10 M-event configuration. It gave 9.7 M events while ICUs were
# undersized (boarders' vitals), 8.7 M since (2026-11-26); 0.70 gives 9.6 M.
TEN_MILLION_SCALE = 0.63


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def run(name: str, cfg: SyntheticConfig, workdir: Path, batch_size: int, calibrate: bool) -> dict:
    t0 = time.perf_counter()
    data = generate_synthetic(cfg)
    t_gen = time.perf_counter() - t0
    n_ev, n_pw = len(data.events), len(data.pathways)
    print(
        f"[{name}] generate: {n_ev:,} events, {n_pw:,} pathways in {t_gen:.1f} s "
        f"({n_ev / t_gen / 1e6:.2f} M events/s), peak RSS {peak_gib():.2f} GiB, {load()}",
        flush=True,
    )
    if calibrate:
        print(markdown(calibration_table(data)))
    t0 = time.perf_counter()
    root = write_synthetic(workdir / name, data)
    t_write = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20
    print(
        f"[{name}] write MEDS: {t_write:.1f} s, {size:.0f} MiB on disk, peak RSS {peak_gib():.2f} GiB, {load()}",
        flush=True,
    )
    del data
    t0 = time.perf_counter()
    hd = connect_hamburg_data(root)
    t_conn = time.perf_counter() - t0
    print(
        f"[{name}] connect (read, validate, split, fit, encode, labels): {t_conn:.1f} s "
        f"({n_ev / t_conn / 1e6:.2f} M events/s), peak RSS {peak_gib():.2f} GiB, {load()}",
        flush=True,
    )
    print(hd.report())
    t0 = time.perf_counter()
    n_b = n_e = 0
    for b in hd.dataloader("train", batch_size=batch_size, shuffle=True, seed=0, bucket_by_length=True):
        n_b += 1
        n_e += int(b.lengths.sum())
    t_batch = time.perf_counter() - t0
    print(
        f"[{name}] batches (train, B={batch_size}, bucketed): {n_b:,} batches, {n_e:,} events in {t_batch:.1f} s "
        f"({n_e / t_batch / 1e6:.2f} M events/s, {n_b / t_batch:.0f} batches/s), peak RSS {peak_gib():.2f} GiB, "
        f"{load()}",
        flush=True,
    )
    return {"events": n_ev, "generate_s": t_gen, "write_s": t_write, "connect_s": t_conn, "batch_s": t_batch}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    print(
        f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}, "
        f"date {time.strftime('%Y-%m-%d')}"
    )
    work = Path(tempfile.mkdtemp(prefix="bench_data_"))
    try:
        run("demo", SyntheticConfig(), work, args.batch_size, calibrate=True)
        if not args.quick:
            cfg = SyntheticConfig(hospitals=tuple(ED_VISITS_2016), scale=TEN_MILLION_SCALE)
            run("10M", cfg, work, args.batch_size, calibrate=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
