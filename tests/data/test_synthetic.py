"""Generator: calibration against published figures, oracles against Monte Carlo, determinism."""

import filecmp

import numpy as np
import pandas as pd
import pytest

from hamburg_mamba.data import synthetic as S
from hamburg_mamba.data.calibration import calibration_table
from hamburg_mamba.data.meds_io import write_synthetic
from hamburg_mamba.data.schema import TASKS
from hamburg_mamba.data.synthetic.arrivals import draw_arrivals
from hamburg_mamba.data.synthetic.city import build_city, city_drivers
from hamburg_mamba.data.synthetic.constants import ICU_AFTER_AE
from hamburg_mamba.data.synthetic.course import inpatient_course
from hamburg_mamba.data.synthetic.generate import spawn_streams
from hamburg_mamba.data.synthetic.hospital import simulate_city
from hamburg_mamba.data.synthetic.labels import course_oracles


@pytest.mark.parametrize("city", ["demo", "smallest_eight"])
def test_calibration_table_within_tolerance(city, request):
    """The table holds for the default city and for a differently sized hospital set (closures included)."""
    table = calibration_table(request.getfixturevalue(city))
    bad = table[~table["ok"]]
    assert bad.empty, "figures outside their tolerance:\n" + bad.to_string()
    assert len(table) >= 27


def test_adverse_event_in_the_last_hour_ends_the_stay_after_the_icu():
    """An adverse event just before the planned discharge sends the patient to the ICU, so the stay (and its
    events) must last until the ICU stay ends; discharge before ICU exit left a readmission label without a
    pathway end in the 10 M run."""
    cfg = S.SyntheticConfig(days=10, scale=0.05)
    pw = _simulated_pathways(cfg)
    rows = np.nonzero(~np.isnan(pw.bed_time) & (pw.disposition == 1))[0]
    assert rows.size > 20
    owner, t0, dt, log_h, offsets, _ = S.hazard_grid(pw, rows)
    total = np.add.reduceat(np.exp(log_h) * dt, offsets[:-1])  # cumulative hazard of each planned stay
    last_bin = np.exp(log_h[offsets[1:] - 1]) * dt[offsets[1:] - 1]
    c = pw.copy()
    c.adverse_event_threshold[rows] = total - 0.5 * last_bin  # the event falls inside the plan's last hour
    c.fatality_uniform[rows] = 1.0  # never fatal
    c.icu_after_adverse_event[rows] = True
    c.icu_death_threshold[rows] = np.inf  # never dies in the ICU
    inpatient_course(c, rows)
    plan_end = c.bed_time[rows] + c.planned_ward_stay_h[rows]
    assert (c.adverse_event_time[rows] > plan_end - 1).all()
    assert (c.icu_out_time[rows] > plan_end).all()
    assert (c.end_time[rows] >= c.icu_out_time[rows]).all()


def _simulated_pathways(cfg):
    """The pathways of `cfg`'s simulation, drawn from the streams generate_synthetic gives the stages."""
    rng_arrivals, rng_course, _, _, _, rng_readmission, rng_closure, _ = spawn_streams(cfg.seed)
    city, drivers = build_city(cfg), city_drivers(cfg)
    arrivals = draw_arrivals(cfg, city, drivers, rng_arrivals)
    return simulate_city(cfg, city, drivers, arrivals, rng_course, rng_readmission, rng_closure)[0]


def test_no_event_after_the_end_of_a_finished_pathway(demo):
    """Every finished pathway's last event is its discharge or death (what readmission labels are keyed on)."""
    ev, pw = demo.events, demo.pathways
    last = ev[ev["pathway_id"].notna()].groupby("pathway_id")["time"].max()
    end = pw.set_index("pathway_id")["t_end"]
    done = end.notna() & (end < pd.Timestamp(demo.config.start) + pd.Timedelta(days=demo.config.days))
    gap = (last.reindex(end.index)[done] - end[done].dt.round("us")).abs()
    assert (gap <= pd.Timedelta(microseconds=1)).all(), gap[gap > pd.Timedelta(microseconds=1)].head()


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    cfg = S.SyntheticConfig(days=6, scale=0.05)
    a = write_synthetic(tmp_path / "a", S.generate_synthetic(cfg))
    b = write_synthetic(tmp_path / "b", S.generate_synthetic(cfg))
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    match, mismatch, errors = filecmp.cmpfiles(a, b, [str(f) for f in files], shallow=False)
    assert not mismatch and not errors
    c = S.generate_synthetic(S.SyntheticConfig(days=6, scale=0.05, seed=1))
    assert not c.events.equals(S.generate_synthetic(cfg).events)


def test_every_head_has_labels_and_oracles(demo):
    assert set(demo.labels) == set(TASKS) == set(demo.oracle)
    for task, frame in demo.labels.items():
        assert len(frame) > 100, task
        assert len(demo.oracle[task]) == len(frame)
        p = demo.oracle[task]["float_value"].to_numpy(dtype=float)
        if TASKS[task].kind == "binary":
            assert np.all((p >= -1e-9) & (p <= 1 + 1e-9)), task


def _monte_carlo_course(data_cfg, reps, seed):
    cfg = data_cfg
    pw = _simulated_pathways(cfg)
    rows = np.nonzero(~np.isnan(pw.bed_time))[0]
    rng = np.random.default_rng(seed)
    died = ae24 = icu24 = 0.0
    for _ in range(reps):  # re-draw only the outcome draws; the skeleton (beds, stays, strain) stays
        c = pw.copy()
        c.adverse_event_threshold[rows] = rng.exponential(1.0, rows.size)
        c.fatality_uniform[rows] = rng.random(rows.size)
        c.icu_after_adverse_event[rows] = rng.random(rows.size) < ICU_AFTER_AE
        c.icu_death_threshold[rows] = rng.exponential(1.0, rows.size)
        inpatient_course(c, rows)
        tb = c.bed_time[rows]
        died = died + c.died[rows]
        ae24 = ae24 + (c.adverse_event_time[rows] <= tb + 24)
        icu24 = icu24 + ((c.icu_in_time[rows] > tb) & (c.icu_in_time[rows] <= tb + 24) & (c.disposition[rows] != 2))
    oracle = course_oracles(pw, rows, pw.bed_time[rows], np.ones(rows.size, bool))
    ward = pw.disposition[rows] != 2
    return {
        "death": (died / reps, oracle.death),
        "ae24": (ae24 / reps, oracle.adverse_event_24h),
        "icu24": (icu24[ward] / reps, oracle.icu_24h[ward]),
    }


def test_adverse_event_oracles_match_monte_carlo():
    """The closed-form probabilities equal the frequency of re-drawn outcomes (within 4 standard errors)."""
    reps = 40
    res = _monte_carlo_course(S.SyntheticConfig(days=30, scale=0.1), reps, seed=5)
    for name, (freq, p) in res.items():
        n = freq.size * reps
        se = np.sqrt(max(p.mean() * (1 - p.mean()), 1e-6) / n)
        assert abs(freq.mean() - p.mean()) < 4 * se, (name, freq.mean(), p.mean(), se)
        assert p.mean() > 0.002, name  # the check has power: the events happen


def test_staff_violation_oracle_matches_binomial_sampling(demo):
    st = demo.staff_shifts
    st = st[st["ppugv_limit"].notna() & (st["p_ratio_violation"] > 0.02) & (st["p_ratio_violation"] < 0.98)]
    assert len(st) > 50
    rng = np.random.default_rng(3)
    reps = 4000
    present = rng.binomial(
        st["nurses_scheduled"].to_numpy()[:, None], 1 - st["p_sick"].to_numpy(float)[:, None], size=(len(st), reps)
    )
    ppn = st["mean_census"].to_numpy(float)[:, None] / np.maximum(present, 1)
    freq = (ppn > st["ppugv_limit"].to_numpy(float)[:, None]).mean(1)
    assert np.abs(freq - st["p_ratio_violation"].to_numpy(float)).max() < 0.04


@pytest.mark.parametrize(
    "task",
    [
        "adverse_event",
        "icu_transfer",
        "in_hospital_death",
        "readmission_30d",
        "ratio_violation_next_shift",
        "unit_workload",
    ],
)
def test_oracle_calibrated_in_the_large(demo, task):
    y = demo.labels[task].iloc[:, 2].to_numpy(dtype=float)
    p = demo.oracle[task]["float_value"].to_numpy(dtype=float)
    # rows that share outcome draws form a cluster: a subject's rows (its course), or for the staff tasks every
    # row whose next shift is the same (one sick-leave draw per unit and shift); the standard error of the mean
    # residual sums residuals per cluster (cluster-robust), and 4 of them bound the difference
    frame = demo.labels[task]
    if task in ("ratio_violation_next_shift", "unit_workload"):
        hours = (frame["prediction_time"] - pd.Timestamp(demo.config.start)) / pd.Timedelta(hours=1)
        key = S.shift_index(demo.config, hours.to_numpy(dtype=float))
    else:
        key = frame["subject_id"].to_numpy()
    _, cluster = np.unique(key, return_inverse=True)
    per_subject = np.bincount(cluster, weights=y - p)
    se = np.sqrt((per_subject**2).sum()) / y.size
    assert abs(y.mean() - p.mean()) <= 4 * se, (y.mean(), p.mean(), se)


def test_oracle_discriminates(demo):
    """The oracle must rank true outcomes above non-outcomes (AUROC well above chance)."""
    for task in ("adverse_event", "in_hospital_death", "closure_24h", "readmission_30d"):
        y = demo.labels[task]["boolean_value"].to_numpy(dtype=bool)
        p = demo.oracle[task]["float_value"].to_numpy(dtype=float)
        r = np.argsort(np.argsort(p)) + 1.0
        auc = (r[y].sum() - y.sum() * (y.sum() + 1) / 2) / (y.sum() * (~y).sum())
        assert auc > 0.6, (task, auc)


def test_closures_respect_night_rule_and_end_by_21(demo):
    hh = demo.hospital_hourly
    hours = hh.loc[hh["closed_to_ems"], "time"].dt.hour
    assert ((hours >= S.CLOSURE_ALLOWED_FROM_H) & (hours < S.CLOSURE_ALLOWED_UNTIL_H)).all()


def test_events_sorted_and_types(demo):
    ev = demo.events
    assert list(ev.columns[:5]) == ["subject_id", "time", "code", "numeric_value", "text_value"]
    s = ev["subject_id"].to_numpy()
    assert (np.diff(s) >= 0).all()
    t = ev["time"].to_numpy().astype("datetime64[us]").astype(np.int64)
    t = np.where(ev["time"].isna(), np.iinfo(np.int64).min, t)
    same = s[1:] == s[:-1]
    assert (t[1:][same] >= t[:-1][same]).all()


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="hospitals"):
        S.SyntheticConfig(hospitals=("Nowhere",))
    with pytest.raises(ValueError, match="heat_wave_level"):
        S.SyntheticConfig(heat_wave_level="tropical")
