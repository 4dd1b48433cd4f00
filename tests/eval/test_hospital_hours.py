"""The closure unit (closures.py): open hospital-hours, their labels, the by-design hours, the pooled score,
the uncapped lead time, alarm share and precision, on hand-built tables and the tiny city's own hourly table
walked by plain loops."""

import numpy as np
import pandas as pd
import pytest

from hamburg_mamba.eval import closures as C

H0 = pd.Timestamp("2023-11-01 00:00")  # the table's first hour: the generator's first day allows no closure
US = 3.6e9


def _hourly(hours, starts=(), closed=(), hospital="A", hazard=0.01):
    """A hand-built hourly table of one hospital: closure starts and closed-at-start hours by index."""
    return pd.DataFrame(
        {
            "hospital": hospital,
            "time": pd.date_range(H0, periods=hours, freq="h"),
            "closure_start": np.isin(np.arange(hours), starts),
            "closed_at_hour_start": np.isin(np.arange(hours), closed),
            "closure_hazard": np.full(hours, hazard, dtype=np.float32),
        }
    )


def test_open_hours_labels_and_by_design_hours_by_hand():
    # day 2 (hours 24..47): a closure starts at 10:00 (hour 34) and runs until 15:xx (closed at 35..39 starts)
    hourly = _hourly(72, starts=[34], closed=[35, 36, 37, 38, 39])
    table = C.hospital_hours(hourly, horizons=(6, 24))
    t = table.set_index("time")
    assert len(table) == 72 - 5  # hours inside the running closure are no rows
    at = lambda h: t.loc[H0 + pd.Timedelta(hours=h)]
    # the decision at 28 (04:00) sees 28..33: no start; at 29 the window 29..34 holds the start at 34
    assert not at(28)["y_6h"] and at(29)["y_6h"] and at(34)["y_6h"] and at(34)["start"]
    assert (H0 + pd.Timedelta(hours=35)) not in t.index
    assert not at(40)["y_6h"]  # reopened: the next start is none
    # by design at 6 h: the first day, and rows whose 6 h window lies in 21:00-06:00
    assert at(10)["by_design_6h"] and at(24 + 21)["by_design_6h"] and at(24 + 23)["by_design_6h"]
    assert at(48)["by_design_6h"] and not at(49)["by_design_6h"]  # 00:00 sees up to 05:00; 01:00 reaches 06:00
    assert not at(24 + 20)["by_design_6h"]
    assert at(24 + 10)["labelled_6h"] and not at(67)["labelled_6h"] and at(66)["labelled_6h"]
    # 24 h windows always reach a daytime hour after the first day (hour 18: 18..41 reaches 24 + 6)
    labelled = table["labelled_24h"] & (table["time"] >= H0 + pd.Timedelta(hours=7))
    assert labelled.sum() == 72 - 5 - 23 - 7 and not table.loc[labelled, "by_design_24h"].any()
    # clairvoyant: 1 - (1 - 0.01)^6 over a 6 h window inside the table
    assert at(40)["clairvoyant_6h"] == pytest.approx(1 - 0.99**6, rel=1e-6)


def test_tiny_city_table_equals_a_plain_loop(tiny_root):
    hourly = C.read_hourly(tiny_root)
    table = C.hospital_hours(hourly)
    first = hourly["time"].min()
    want = []
    for name, g in hourly.groupby(hourly["hospital"].astype(str)):
        g = g.sort_values("time").reset_index(drop=True)
        for i in range(len(g)):
            if g.loc[i, "closed_at_hour_start"]:
                continue
            row = {"hospital": name, "time": g.loc[i, "time"]}
            for k in C.HORIZONS_H:
                window = g.iloc[i : i + k]
                row[f"y_{k}h"] = bool(window["closure_start"].any())
                row[f"labelled_{k}h"] = i + k <= len(g)
                # the generator's hazard is exactly 0 where no closure may start
                row[f"by_design_{k}h"] = bool((window["closure_hazard"] == 0).all())
            want.append(row)
    want = pd.DataFrame(want)
    assert len(table) == len(want)
    for col in want.columns:
        np.testing.assert_array_equal(table[col].to_numpy(), want[col].to_numpy(), err_msg=col)
    # a start is only ever flagged in an open hour, and no closed-at-start hour follows none (consistency)
    assert hourly.loc[hourly["closure_start"], "closed_at_hour_start"].sum() == 0
    assert table["start"].sum() == hourly["closure_start"].sum()
    assert (first + pd.Timedelta(hours=C.CLOSURE_MIN_HISTORY_H)) <= table.loc[table["start"], "time"].min()


def test_read_hourly_names_the_missing_column(tmp_path):
    (tmp_path / "system").mkdir()
    _hourly(3).drop(columns="closed_at_hour_start").to_parquet(tmp_path / "system" / "hospital_hourly.parquet")
    with pytest.raises(ValueError, match="closed_at_hour_start"):
        C.read_hourly(tmp_path)
    assert C.read_hourly(tmp_path / "elsewhere") is None


def _us(hours):
    return (H0.to_datetime64().astype("datetime64[us]").astype(np.int64) + np.asarray(hours) * US).astype(np.int64)


def test_score_pools_latest_predictions_at_the_hospital_known_then():
    """Pathway 1 is at A until its row at 2.5 h says B (a transfer); it leaves at 4.2 h (its last event, after
    its last prediction at 3.0 h). Pathway 2 is at A from 1.0 h, its destination unknown at 0.5 h."""
    time_us = _us([0.5, 2.5, 3.0, 0.5, 1.0, 2.0])
    hospital = np.array(["A", "B", "B", None, "A", "A"], dtype=object)
    pathway = np.array([1, 1, 1, 2, 2, 2])
    risk = np.array([0.2, 0.6, 0.8, 0.9, 0.4, 0.5])
    end_us = _us([4.2, 4.2, 4.2, 2.0, 2.0, 2.0])
    got = C.hospital_risk_series(time_us, hospital, pathway, risk, pd.date_range(H0, periods=6, freq="h"), end_us)
    # hour 0: nobody has a prediction -> 0; 1: p1 0.2 at A, p2 0.4 at A -> 0.3; 2: p1 0.2, p2 0.5 -> 0.35;
    # 3: p1 0.8 at B, p2 left (2.0 h) -> A carries 0.35, B 0.8; 4: p1 still there (leaves at 4.2) -> B 0.8;
    # 5: nobody -> carried
    np.testing.assert_allclose(got["A"].to_numpy(), [0, 0.3, 0.35, 0.35, 0.35, 0.35])
    np.testing.assert_allclose(got["B"].to_numpy(), [0, 0, 0, 0.8, 0.8, 0.8])
    # without the pathway's end, presence stops at its last prediction (3.0 h)
    short = C.hospital_risk_series(time_us, hospital, pathway, risk, pd.date_range(H0, periods=6, freq="h"))
    np.testing.assert_allclose(short["B"].to_numpy(), [0, 0, 0, 0.8, 0.8, 0.8])
    assert sorted(got.columns) == ["A", "B"]


def _plain_leads(times, on, starts):
    """Hours the alarm stood at each start, walking back hour by hour; None when off at the start."""
    out = []
    on_at = dict(zip(times, on, strict=True))
    for s in starts:
        if not on_at[s]:
            out.append(None)
            continue
        a = s
        while on_at.get(a - 1, False):
            a -= 1
        out.append(float(s - a))
    return out


def test_lead_alarm_share_precision_and_firings_by_hand():
    # one hospital, open hours 0..59 except 20..24 (a closure from 19); starts at 19 and 54 (06:00 of day 3)
    hourly = _hourly(60, starts=[19, 54], closed=[20, 21, 22, 23, 24])
    table = C.hospital_hours(hourly, horizons=(6,))
    hours = (table["time"] - H0) / pd.Timedelta(hours=1)
    score = np.zeros(len(table))
    score[hours.between(10, 19)] = 0.5  # alarm 10..19: the start at 19 is warned 9 h ahead
    score[hours.between(25, 30)] = 0.5  # a run after reopening: fires once, no start within 24 h -> false
    score[hours.between(53, 54)] = 0.5  # 53..54: the start at 54 warned 1 h ahead
    summary = C.warning_summary(table, score, 0.4, horizon=6)
    assert _plain_leads(list(hours), list(score >= 0.4), [19, 54]) == [9.0, 1.0]
    assert summary["closures"] == 2 and summary["warned_share"] == 1.0 and summary["warned_6h_share"] == 0.5
    assert summary["median_lead_h"] == 5.0 and summary["max_lead_h"] == 9.0
    assert summary["firings"] == 3 and summary["false_alarms"] == 1
    # scored 6 h rows: labelled, reaching a daytime hour, after the first day
    m = C.scored(table, 6)
    y = table["y_6h"].to_numpy()
    on = score >= 0.4
    assert summary["alarm_share"] == pytest.approx(on[m].mean())
    assert summary["alarm_precision"] == pytest.approx(y[m & on].mean())
    assert summary["scored_hours"] == int(m.sum())
    # by hand: open labelled hours after the first day are 25..54 (24 is closed; 55.. unlabelled at 6 h), less
    # 45..48 (21:00-00:00, windows inside the night): 26 rows; alarm on at 25..30 and 53..54 = 8 rows; of
    # those, 53 and 54 see the start at 54 within 6 h (25..30 do not)
    assert m.sum() == 26 and on[m].sum() == 8 and (y[m & on]).sum() == 2
    assert summary["by_design_hours"] == 20 + 4  # the first day (open hours 0..19) and 45..48
    # the standing alarm across the closure is two runs: a closed hour breaks it
    always = C.warning_summary(table, np.ones(len(table)), 0.4, horizon=6)
    assert always["median_lead_h"] == (19.0 + (54 - 25)) / 2 and always["alarm_share"] == 1.0


def test_threshold_is_the_lowest_within_the_false_alarm_budget():
    hourly = _hourly(60, starts=[30])
    table = C.hospital_hours(hourly, horizons=(6,))
    hours = ((table["time"] - H0) / pd.Timedelta(hours=1)).to_numpy()
    score = np.where((hours >= 27) & (hours <= 30), 0.5, np.where((hours >= 40) & (hours <= 41), 0.3, 0.1))
    # budget 0 false firings: 0.1 fires everywhere (a run of 60 h fires at 0, 24, 48: 48 has no start
    # after it), 0.3 fires at 40 (false); the lowest without a false firing is 0.32
    assert C.choose_threshold(table, score, 0.0) == 0.32
    weeks = len(table) / C.HOURS_PER_WEEK
    assert C.choose_threshold(table, score, 1.0 / weeks) == 0.12  # one false firing allowed: 0.12 fires at 40
