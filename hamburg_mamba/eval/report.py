"""Report folder from an evaluation folder (experiment.py): README.md with the tables and PNG plots.

    report/README.md                summary, goal check, TRIPOD+AI sections (tripod.py), per-task tables,
                                    closures, subgroups, robustness, notes
    report/report.html              the same with every figure embedded: one file that opens offline
    report/roc.png                  ROC curves, one panel per binary task, every model
    report/calibration.png          reliability of the recalibrated probabilities, zoomed to their range, with
                                    each model's risk histogram
    report/decision_curves.png      net benefit vs alerting on everyone / no one, 0.5-20 % for rare outcomes
    report/closure_timeline.png     per hospital: predicted closure risk over the whole window, the primary
                                    model's alarm, closure starts, heat wave / flu wave / mass-casualty
                                    incident shaded, held-out period marked
    report/<figure>_external_<city>.png
                                    the same four per external city, from its own prediction files
                                    (run_comparison's external/<city>/); its timeline at every open hour of
                                    its own hospitals, shaded from its own root

Every figure draws a model in its one colour (MODEL_COLORS).
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

from hamburg_mamba.eval import closures as C
from hamburg_mamba.eval import metrics as M
from hamburg_mamba.eval import robustness, tripod
from hamburg_mamba.eval.experiment import EXTERNAL_DIR
from hamburg_mamba.eval.report_html import write_html

SAFETY_GOAL_GAP = 0.02  # Mamba AUROC within this of the fair bound (the project's experiment goal)
ECE_GOAL = 0.02
LEAD_GOAL_H = 6.0
FLU_WAVE_SHARE = 0.5  # the flu wave is shaded where the expected flu share is above half its peak
# One colour per model in every figure (Okabe M, Ito K. Color Universal Design, 2008: distinguishable with the
# common colour-vision deficiencies); the generator's references are dashed and grey or black.
MODEL_COLORS = {
    "mamba": "#D55E00",
    "hybrid": "#CC79A7",
    "gru": "#009E73",
    "transformer": "#56B4E9",
    "catboost": "#0072B2",
    "news2": "#E69F00",
    "fair_bound": "#000000",
    "oracle": "#888888",
    "always_on": "#BBBBBB",
    "time_of_day": "#F0E442",
    "nedocs_trend": "#8C564B",
    "clairvoyant": "#888888",
}
OTHER_COLOR = "#555555"
REFERENCES = ("fair_bound", "oracle", "clairvoyant")
CALIBRATION_MIN_RANGE = 0.05  # reliability axes never narrower than 0-5 %
CALIBRATION_MARGIN = 1.15  # reliability axes reach this far beyond the highest bin
CALIBRATION_HIST_BINS = 40
ALARM_BAND = 0.06  # height of the closure timeline's alarm band (risk axis 0-1)
PREDICTION_FILES = ("predictions.parquet", "pathway_predictions.parquet")  # event- and pathway-level rows
RARE_PREVALENCE = 0.05  # below it a decision curve spans RARE_THRESHOLDS
RARE_THRESHOLDS = np.round(np.arange(0.005, 0.2001, 0.005), 3)  # 0.5-20 %
MODEL_ORDER = ("mamba", "hybrid", "gru", "transformer", "catboost", "news2", "fair_bound", "oracle")
CLOSURE_ORDER = ("always_on", "time_of_day", "nedocs_trend", "clairvoyant")  # after the models
# How a reference is named in the tables: the oracle reads the future, the fair bound does not.
LABELS = {
    "oracle": "oracle (clairvoyant, not reachable)",
    "fair_bound": "fair bound",
    "clairvoyant": "clairvoyant hazard (not reachable)",
    "always_on": "always on",
    "time_of_day": "time of day (training rate)",
    "nedocs_trend": "NEDOCS trend alone",
}


HELD_OUT_LABEL = "held-out (Hamburg)"  # the development city's held-out period, as the tables name it


def data_sets(metrics: dict) -> list[tuple[str, dict]]:
    """(label, block) per evaluated data set: the held-out period (metrics itself), then each external city
    (metrics["external"][city], the same layout)."""
    return [(HELD_OUT_LABEL, metrics)] + [(f"external ({c})", b) for c, b in metrics.get("external", {}).items()]


def model_color(name: str) -> str:
    """The model's colour in every figure; a name outside the palette gets a grey."""
    return MODEL_COLORS.get(name, OTHER_COLOR)


def model_style(name: str) -> dict:
    """matplotlib line keywords: the model's colour, dashed for the generator's references."""
    return {"color": model_color(name), "ls": "--" if name in REFERENCES else "-"}


def _ordered(models):
    known = [m for m in MODEL_ORDER if m in models]
    return known + [m for m in models if m not in known]


def summary_table(metrics: dict) -> str:
    """Markdown: AUROC (95 % CI) per binary task and model, with prevalence; MAE for regression. One row per
    task and data set (held-out period, each external city), with a data-set column when there is more than
    one."""
    sets = data_sets(metrics)
    models = _ordered(list(dict.fromkeys(m for _, block in sets for m in block["models"])))
    first = ["task", "data set"] if len(sets) > 1 else ["task"]
    head = "| " + " | ".join(first) + " | prevalence | " + " | ".join(LABELS.get(m, m) for m in models) + " |"
    lines = [head, "|" + "---|" * (len(models) + len(first) + 1)]
    for task in metrics["tasks"]:
        for label, block in sets:
            if task in block["tasks"]:
                lines.append(_summary_row(task, label if len(sets) > 1 else None, block["tasks"][task], models))
    return "\n".join(lines)


def _summary_row(task: str, data_set: str | None, r: dict, models: list[str]) -> str:
    cells = []
    for m in models:
        e = r["models"].get(m)
        if e is None:
            cells.append("-")
        elif r["kind"] == "regression":
            cells.append(f"MAE {e['mae']:.2f}")
        else:
            a = e["auroc"]
            cells.append(M.Estimate(*(np.nan if a[k] is None else a[k] for k in ("value", "low", "high"))).fmt())
    prev = f"{r['prevalence']:.3f}" if r.get("prevalence") is not None else "-"
    first = f"{task} | {data_set}" if data_set else task
    return f"| {first} | {prev} | " + " | ".join(cells) + " |"


def _verdict(diff: dict, margin: float = 0.0) -> str:
    """Three-way verdict of a paired difference (model minus reference) against -margin: met when its whole
    95 % interval lies above, NOT met when below, not shown when it straddles (or has no interval)."""
    lo, hi = diff.get("low"), diff.get("high")
    if lo is None or hi is None:
        return "no interval"
    return "met" if lo > -margin else "NOT met" if hi < -margin else "not shown (interval spans it)"


def _fmt_diff(d: dict) -> str:
    iv = "" if d.get("low") is None or d.get("high") is None else f" ({d['low']:+.3f} to {d['high']:+.3f})"
    return f"{d['value']:+.3f}{iv}"


def goal_check(metrics: dict, model: str = "mamba") -> list[str]:
    """The experiment goal, measured: per safety task one line with the paired AUROC differences (model minus
    reference, 95 % cluster-bootstrap interval of the difference) and a verdict read from the interval."""
    out = []
    tasks = metrics["tasks"]
    safety = [t for t, r in tasks.items() if r["group"] == "safety" and r["kind"] == "binary"]
    for t in safety:
        e = tasks[t]["models"].get(model)
        comp = tasks[t].get("comparisons", {})
        if e is None or e["auroc"]["value"] is None:
            continue
        parts = []
        if "fair_bound" in comp:
            d = comp["fair_bound"]["auroc_difference"]
            parts.append(f"vs fair bound {_fmt_diff(d)} (within {SAFETY_GOAL_GAP}: {_verdict(d, SAFETY_GOAL_GAP)})")
        if "oracle" in comp:
            parts.append(
                f"vs clairvoyant oracle {_fmt_diff(comp['oracle']['auroc_difference'])} (not reachable, no goal)"
            )
        if "catboost" in comp:
            d = comp["catboost"]["auroc_difference"]
            parts.append(f"vs CatBoost {_fmt_diff(d)} (above: {_verdict(d)})")
        if "news2" in comp:
            d = comp["news2"]["auroc_difference"]
            parts.append(f"vs NEWS2 {_fmt_diff(d)} (clearly above: {_verdict(d)})")
        for other in ("hybrid", "gru", "transformer", "mamba"):
            if other in comp:
                parts.append(f"vs {other} {_fmt_diff(comp[other]['auroc_difference'])}")
        parts.append(
            f"ECE after tuning recalibration {e['ece_recalibrated']:.4f} "
            f"({'met' if e['ece_recalibrated'] <= ECE_GOAL else 'NOT met'})"
        )
        out.append(f"- {t}: AUROC {e['auroc']['value']:.3f}; " + "; ".join(parts))
    cl = metrics.get("closures", {}).get("models", {}).get(model)
    if cl:
        lead = cl["median_lead_h"]
        verdict = "met" if lead is not None and lead >= LEAD_GOAL_H else "NOT met"
        out.append(
            f"- closures (hospital-hours): median lead {lead} h (no cap; missed = 0 h) over {cl['closures']} "
            f"held-out closures, {100 * (cl['warned_6h_share'] or 0):.0f} % warned >= 6 h ahead, with the "
            f"alarm on in {100 * (cl['alarm_share'] or 0):.0f} % of hospital-hours at precision "
            f"{_pct(cl['alarm_precision'])} (goal >= 6 h: {verdict}; read it beside the alarm share)"
        )
    return out


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.0f} %"


def _task_table(entries: list[tuple[str, dict]]) -> str:
    """Markdown: one row per model of one task, per data set ((label, task entry) each; a data-set column when
    there is more than one)."""
    regression = entries[0][1]["kind"] == "regression"
    first = ["data set", "model"] if len(entries) > 1 else ["model"]
    rest = (
        ["MAE", "RMSE", "R2"]
        if regression
        else [
            "AUROC",
            "AUPRC",
            "Brier",
            "cal. slope",
            "cal. intercept",
            "ECE",
            "ECE recal.",
            "alerts / 100 patient-days (threshold: 80 % sens. on tuning)",
            "held-out sens.",
        ]
    )
    lines = ["| " + " | ".join(first + rest) + " |", "|" + "---|" * (len(first) + len(rest))]
    for label, r in entries:
        for m in _ordered(r["models"]):
            cells = ([label] if len(entries) > 1 else []) + [LABELS.get(m, m) if not regression else m]
            cells += _regression_cells(r["models"][m]) if regression else _binary_cells(r["models"][m])
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _regression_cells(e: dict) -> list[str]:
    return [f"{e['mae']:.3f}", f"{e['rmse']:.3f}", f"{e['r2']:.3f}"]


def _binary_cells(e: dict) -> list[str]:
    f = lambda k, d=3: M.Estimate(*(np.nan if e[k][x] is None else e[k][x] for x in ("value", "low", "high"))).fmt(d)
    ab = e.get("alert_burden", {}).get("alerts_per_100_patient_days")
    sens = e.get("alert_burden", {}).get("sensitivity")
    return [
        f("auroc"),
        f("auprc"),
        f("brier", 4),
        f("calibration_slope", 2),
        f("calibration_intercept", 2),
        f("ece", 4),
        f"{e['ece_recalibrated']:.4f}",
        "-" if ab is None else f"{ab:.1f}",
        _pct(sens),
    ]


def write_report(
    eval_dir: str | Path,
    out_dir: str | Path,
    data_root: str | Path | None = None,
    primary: str = "mamba",
    command: str | None = None,
) -> Path:
    eval_dir, out_dir = Path(eval_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    data_root = Path(data_root or metrics["split"]["root"])
    figures = _figures(metrics, eval_dir, out_dir, data_root)
    md = ["# hamburg-mamba: held-out comparison", ""]
    periods = metrics.get("periods", {})
    md += [
        f"Split: `{metrics['split']['split']}` {metrics['split'].get('temporal_cutoffs') or ''}; prediction rows "
        f"per period: " + ", ".join(f"{k} {v[0][:16]} .. {v[1][:16]}" for k, v in periods.items() if k != "hospitals"),
        "",
    ]
    if command:
        md += ["Reproduce:", "", "```", command, "```", ""]
    md += [
        f"**One seed.** Every model here was trained once (one training seed) on one generated city; the intervals "
        f"cover held-out patients, not retraining. The spread over seeds and cities: `{tripod.REPLICATE_HINT}` "
        f"(docs/experiments.md, Replication).",
        "",
    ]
    md += tripod.sections(metrics, primary)
    scope = "held-out" if "external" not in metrics else "held-out and external (each city scored whole)"
    md += [
        f"## Summary: {scope} AUROC (95 % cluster-bootstrap CI: subjects for patient tasks, hospital-days "
        "for closure tasks, unit-shifts for staff tasks)",
        "",
        summary_table(metrics),
        "",
    ]
    sets = data_sets(metrics)
    md += [f"## Goal check ({primary})", ""] + (goal_check(metrics, primary) or ["- no safety task evaluated"]) + [""]
    for label, block in sets[1:]:
        md += [f"{label}:", ""] + (goal_check(block, primary) or ["- no safety task evaluated"]) + [""]
    for task in metrics["tasks"]:
        entries = [(label, block["tasks"][task]) for label, block in sets if block["tasks"].get(task, {}).get("models")]
        if entries:
            md += [_task_heading(task, entries, len(sets) > 1), "", _task_table(entries), ""]
    md += closure_section(metrics.get("closures"), [(label, block.get("closures")) for label, block in sets[1:]])
    for label, block in sets:
        md += _subgroup_section(block, primary, "" if len(sets) == 1 else f", {label}")
    md += robustness.report_section(metrics)
    for label, block in sets[1:]:
        md += robustness.report_section(block, title=f"Robustness: {label}, rows beyond the training range")
    for heading, paths in figures:
        md += [f"## Plots ({heading})", ""] + [f"![{p.stem}]({p.name})" for p in paths] + [""]
    md += ["## Notes", ""] + [f"- {n}" for n in metrics.get("notes", [])]
    miss = metrics.get("news2_missing_vitals", {}).get("held_out")
    if miss:
        md.append(
            f"- NEWS2: rows without any earlier measurement of a parameter score 0 for it "
            f"(held-out rows missing each parameter: {miss})"
        )
    md += [
        "- Oracle (clairvoyant, not reachable): the generator's probability conditional on the realised system "
        "path (bed times, planned stay, strain), information no model has at prediction time. The goals are "
        "measured against the fair bound (P(label | simulator state at t), data/fair_bound.py) where the task "
        "has one; closures and staffing have none.",
        "- Thresholds (alert burden, closure alarm) are chosen on the tuning period and applied to held-out.",
        "",
        "## Data accounting",
        "",
        "```",
        metrics.get("data_report", ""),
        "```",
        "",
    ]
    path = out_dir / "README.md"
    path.write_text("\n".join(md))
    write_html("\n".join(md), out_dir, out_dir / "report.html", title=md[0].lstrip("# "))
    return path


def _task_heading(task: str, entries: list[tuple[str, dict]], several: bool) -> str:
    """### task (group, level, n and prevalence per data set)."""
    r = entries[0][1]
    sizes = "; ".join(
        (f"{label}: " if several else "")
        + f"n = {e['n']}"
        + (f", prevalence {e['prevalence']:.4f}" if e.get("prevalence") is not None else "")
        for label, e in entries
    )
    return f"### {task} ({r['group']}, {r['level']}-level, {sizes})"


def closure_section(cl: dict | None, external: list[tuple[str, dict | None]] = ()) -> list[str]:
    """Markdown: the hospital-hour closure table (closures.py) with its unit, counts and rules; with external
    cities ((label, their closures entry)) one block of rows per data set, every threshold from the
    development tuning hours."""
    if not cl:
        return []
    sets = [(HELD_OUT_LABEL, cl)] + [(label, e) for label, e in external if e]
    h = cl["hours"]
    ks = [str(k) for k in cl["horizons_h"]]
    counts = "; ".join(
        f"{k} h: {h[k]['scored']} scored, {h[k]['by_design']} by design (no start possible), "
        f"{h[k]['unlabelled']} unlabelled (window past the data)"
        for k in ks
    )
    md = [
        f"## Closure warnings (hospital-hours, alarm from {cl['alarm_task']})",
        "",
        f"Unit: one row per hospital and hour while the hospital is open ({h['open']} held-out hospital-hours, "
        f"{h['closures']} closure starts); label: a new closure starts within k h. {counts}. Model score: mean of "
        f"the latest predictions of the pathways at the hospital by that hour (closures.hospital_risk_series). "
        f"AUROC with 95 % intervals from hospital-day blocks; 'minus' = {cl['primary']} minus this source, "
        f"paired over the same resamples. Alarm threshold: lowest with <= "
        f"{cl['max_false_alarms_per_week_on_tuning']} false firings per hospital-week on the tuning hours "
        f"(a standing alarm re-fires every {cl['refire_h']} h). Lead: hours the alarm had stood when the closure "
        f"started, no cap (missed = 0 h in the median); precision and alarm share at "
        f"{cl['models'][next(iter(cl['models']))]['horizon_h'] if cl['models'] else '-'} h on the scored hours.",
        "",
    ]
    for label, e in sets[1:]:
        md += [
            f"{label}: every open hour of its own hospitals ({e['hours']['open']} hospital-hours, "
            f"{e['hours']['closures']} closure starts), the models' scores pooled from its prediction rows; the "
            f"comparators as fitted on the development training hours and every threshold as chosen on the "
            f"development tuning hours.",
            "",
        ]
    head = (
        (["data set"] if len(sets) > 1 else [])
        + ["source"]
        + [f"AUROC {k} h" for k in ks]
        + [
            f"{cl['primary']} minus, {ks[0]} h",
            "threshold",
            "alarm share",
            "precision",
            "prevalence",
            "warned",
            "warned >= 6 h",
            "median lead (h)",
            "max lead (h)",
            "alarm share by design",
            "false firings / hospital-week",
        ]
    )
    md += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, block in sets:
        md += _closure_rows(block, ks, label if len(sets) > 1 else None)
    notes = [f"- {n}" for _, block in sets for n in block.get("notes", [])]
    return md + [""] + notes + [""]


def _closure_rows(cl: dict, ks: list[str], data_set: str | None) -> list[str]:
    md = []
    models = _ordered([m for m in cl["models"] if m not in CLOSURE_ORDER]) + [
        m for m in CLOSURE_ORDER if m in cl["models"]
    ]
    for m in models:
        e = cl["models"][m]
        aucs = [_est(e["auroc"].get(k)) for k in ks]
        diff = e.get("vs_primary", {}).get(ks[0])
        md.append(
            "| "
            + " | ".join(
                ([data_set] if data_set else [])
                + [
                    LABELS.get(m, m),
                    *aucs,
                    "-" if diff is None else _fmt_diff(diff),
                    f"{e['threshold']:.2f}",
                    _pct(e["alarm_share"]),
                    _pct(e["alarm_precision"]),
                    _pct(e["prevalence"]),
                    _pct(e["warned_share"]),
                    _pct(e["warned_6h_share"]),
                    _num(e["median_lead_h"]),
                    _num(e["max_lead_h"]),
                    _pct(e["alarm_share_by_design"]),
                    f"{e['false_alarms_per_week']:.2f}",
                ]
            )
            + " |"
        )
    return md


def _est(d: dict | None, digits: int = 3) -> str:
    if d is None:
        return "n/a"
    return M.Estimate(*(np.nan if d[x] is None else d[x] for x in ("value", "low", "high"))).fmt(digits)


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def _subgroup_section(metrics, primary, data_set: str = "") -> list[str]:
    out = []
    for task in ("adverse_event", "in_hospital_death", "closure_6h"):
        r = metrics["tasks"].get(task)
        if not r or primary not in r["models"] or "subgroups" not in r["models"][primary]:
            continue
        models = [m for m in _ordered(r["models"]) if "subgroups" in r["models"][m]]
        out += [
            f"### Subgroups: {task} AUROC (95 % intervals, clusters as the task's){data_set}",
            "",
            "| subgroup | n | prevalence | " + " | ".join(models) + " |",
            "|" + "---|" * (len(models) + 3),
        ]
        for g, vals in r["models"][primary]["subgroups"].items():
            for level, v in vals.items():
                cells = []
                for m in models:
                    a = r["models"][m]["subgroups"][g][level]
                    cells.append(_est({"value": a["auroc"], "low": a.get("low"), "high": a.get("high")}))
                out.append(f"| {g} = {level} | {v['n']} | {v['prevalence']:.3f} | " + " | ".join(cells) + " |")
        out.append("")
    return out


# ----------------------------------------------------------------------------------------------------------
# Plots


def _binary_tasks(metrics):
    return [t for t, r in metrics["tasks"].items() if r["kind"] == "binary" and r["models"]]


def _grid(n):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4.2 * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    return plt, fig, axes.ravel()


def _task_data(task, metrics, pred, ppred, recalibrated: bool = False):
    """Held-out labels of a task and each model's probabilities (the recalibrated ones where asked and the
    model has them; the references and NEWS2 are used as they are)."""
    frame = pred if metrics["tasks"][task]["level"] == "event" else ppred
    m = frame[f"{task}|mask"].to_numpy()
    y = frame[f"{task}|label"].to_numpy()[m]
    out = {}
    for model in _ordered(metrics["tasks"][task]["models"]):
        col = f"{task}|{model}"
        if recalibrated and f"{col}|recal" in frame:
            col = f"{col}|recal"
        if col in frame:
            out[model] = np.clip(frame[col].to_numpy()[m], 0, 1)
    return y, out


def _figures(metrics, eval_dir: Path, out_dir: Path, data_root: Path) -> list[tuple[str, list[Path]]]:
    """(heading, figures) per data set: the held-out period from eval_dir's files, then each external city
    from its own prediction files (eval_dir/external/<city>/), its figure names suffixed with the city."""
    held = _binary_figures(metrics, *_prediction_frames(eval_dir), out_dir, "", HELD_OUT_LABEL)
    timeline = eval_dir / "timeline.parquet"
    if timeline.exists():
        held.append(_held_out_timeline(metrics, timeline, eval_dir / "closures.parquet", out_dir, data_root))
    out = [("held-out period", held)]
    for city, suffix in figure_suffixes(metrics.get("external", {})).items():
        block, folder, label = metrics["external"][city], eval_dir / EXTERNAL_DIR / city, f"external ({city})"
        paths = _binary_figures(block, *_prediction_frames(folder), out_dir, suffix, label)
        if block.get("closures") and (folder / "closure_series.parquet").exists():
            paths.append(_external_timeline(block, folder / "closure_series.parquet", out_dir, suffix, label))
        out.append((f"external: {city}", paths))
    return out


def figure_suffixes(cities) -> dict[str, str]:
    """city -> the suffix of its figures' file names: "_external_<city>" in ASCII letters, digits and
    underscores (a Markdown image link takes no spaces), numbered where two cities would share one."""
    out: dict[str, str] = {}
    for city in cities:
        ascii_name = unicodedata.normalize("NFKD", city).encode("ascii", "ignore").decode()
        base = "_external_" + (re.sub(r"[^A-Za-z0-9]+", "_", ascii_name).strip("_") or "city")
        suffix, k = base, 2
        while suffix in out.values():
            suffix, k = f"{base}_{k}", k + 1
        out[city] = suffix
    return out


def _prediction_frames(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(event-level, pathway-level) prediction tables that run_comparison wrote into `folder`."""
    for name in PREDICTION_FILES:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name}: missing; the report reads run_comparison's {PREDICTION_FILES}")
    return tuple(pd.read_parquet(folder / name) for name in PREDICTION_FILES)


def _binary_figures(block, pred, ppred, out_dir: Path, suffix: str, label: str) -> list[Path]:
    """ROC, calibration and decision curves of one data set's binary tasks (`block`: metrics or one external
    city's entry), written as <figure><suffix>.png."""
    tasks = _binary_tasks(block)
    if not tasks:
        return []
    plots = (("roc", _roc_plot), ("calibration", _calibration_plot), ("decision_curves", _decision_plot))
    return [plot(block, tasks, pred, ppred, out_dir / f"{stem}{suffix}.png", label) for stem, plot in plots]


def _one_class(ax, task, y) -> bool:
    if y.size == 0 or y.min() == y.max():
        ax.set_title(f"{task}: one class only")
        ax.axis("off")
        return True
    return False


def _save(plt, fig, path: Path, dpi: int = 90) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _roc_plot(metrics, tasks, pred, ppred, path: Path, label: str) -> Path:
    plt, fig, axes = _grid(len(tasks))
    for ax, task in zip(axes[: len(tasks)], tasks, strict=True):  # the grid's spare axes are switched off
        y, models = _task_data(task, metrics, pred, ppred)
        if _one_class(ax, task, y):
            continue
        for name, p in models.items():
            fpr, tpr = M.roc_points(y, p)
            ax.plot(fpr, tpr, label=f"{LABELS.get(name, name)} {M.auroc(y, p):.3f}", lw=1.2, **model_style(name))
        ax.plot([0, 1], [0, 1], ":", color="0.5", lw=0.8)
        ax.set(
            xlabel="false positive rate (1 - specificity)",
            ylabel="sensitivity",
            title=f"{task}, {label}\n(prevalence {y.mean():.3f})",
        )
        ax.legend(fontsize=7, title="AUROC", title_fontsize=7)
    return _save(plt, fig, path)


def _calibration_plot(metrics, tasks, pred, ppred, path: Path, label: str) -> Path:
    """Reliability of the recalibrated probabilities (what an alert would read), the axes zoomed to the range
    the predictions occupy, with each model's risk histogram below its panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(tasks))
    rows = int(np.ceil(len(tasks) / cols))
    fig = plt.figure(figsize=(5 * cols, 5.4 * rows))
    grid = fig.add_gridspec(2 * rows, cols, height_ratios=[3, 1] * rows)
    for k, task in enumerate(tasks):
        top = fig.add_subplot(grid[2 * (k // cols), k % cols])
        bottom = fig.add_subplot(grid[2 * (k // cols) + 1, k % cols], sharex=top)
        y, models = _task_data(task, metrics, pred, ppred, recalibrated=True)
        if _one_class(top, task, y):
            bottom.axis("off")
            continue
        hi = calibration_zoom(y, models)
        for name, p in models.items():
            mp, obs = M.calibration_curve(y, p)
            top.plot(mp, obs, marker="o", ms=3, lw=1.0, label=LABELS.get(name, name), **model_style(name))
            bottom.hist(
                np.clip(p, 0, hi),
                bins=CALIBRATION_HIST_BINS,
                range=(0, hi),
                histtype="step",
                color=model_color(name),
                lw=1.0,
            )
        top.plot([0, hi], [0, hi], ":", color="0.5", lw=0.8)
        top.set(
            xlim=(0, hi),
            ylim=(0, hi),
            ylabel="observed rate",
            title=f"{task}, {label}\n(prevalence {y.mean():.3f}), recalibrated",
        )
        top.legend(fontsize=7)
        bottom.set(xlabel=f"predicted risk (beyond {hi:.2f} counted in the last bar)", ylabel="rows")
        bottom.set_yscale("log")
    return _save(plt, fig, path)


def calibration_zoom(y, models: dict[str, np.ndarray]) -> float:
    """Upper end of a reliability plot's axes: the largest mean prediction or observed rate of any model's
    equal-mass bins, with a margin, at least CALIBRATION_MIN_RANGE (a 1 % outcome's bins lie below 0.1, and
    a 0-1 axis would press them into a corner). The generator's references do not widen it: the clairvoyant
    oracle's top bins reach near 1 where no model goes."""
    fitted = {n: p for n, p in models.items() if n not in REFERENCES} or models
    top = max(max(np.max(c) for c in M.calibration_curve(y, p)) for p in fitted.values())
    return float(min(1.0, max(CALIBRATION_MIN_RANGE, CALIBRATION_MARGIN * top)))


def decision_thresholds(prevalence: float) -> np.ndarray:
    """Threshold probabilities of a decision curve: 0.5-20 % for a rare outcome (a clinician would act on a
    2-10 % risk of ICU transfer, not on 40 %), 1-50 % otherwise."""
    return RARE_THRESHOLDS if prevalence < RARE_PREVALENCE else M.DECISION_THRESHOLDS


def _decision_plot(metrics, tasks, pred, ppred, path: Path, label: str) -> Path:
    plt, fig, axes = _grid(len(tasks))
    for ax, task in zip(axes[: len(tasks)], tasks, strict=True):  # the grid's spare axes are switched off
        y, models = _task_data(task, metrics, pred, ppred, recalibrated=True)
        if _one_class(ax, task, y):
            continue
        t = decision_thresholds(y.mean())
        for name, p in models.items():
            ax.plot(100 * t, M.net_benefit(y, p, t)["model"], lw=1.2, label=LABELS.get(name, name), **model_style(name))
        nb = M.net_benefit(y, y, t)
        ax.plot(100 * t, nb["treat_all"], "--", color="0.4", lw=0.8, label="alert on everyone")
        ax.axhline(0, color="0.2", lw=0.8, label="alert on no one")
        ax.set_ylim(-0.2 * y.mean(), 1.1 * y.mean())
        ax.set(
            xlabel="risk at which one would act (threshold, %)",
            ylabel="net benefit (true alerts per row)",
            title=f"{task}, {label}\n(prevalence {y.mean():.3f}), recalibrated",
        )
        ax.legend(fontsize=7)
    return _save(plt, fig, path)


def _held_out_timeline(metrics, timeline: Path, closures: Path, out_dir: Path, data_root: Path) -> Path:
    """The development city over its whole window (run_comparison's timeline.parquet: the primary model and
    the oracle at every hour, in-sample before the held-out period)."""
    held = metrics["periods"].get("held_out")
    return _timeline_plot(
        pd.read_parquet(timeline),
        pd.read_parquet(closures),
        _crisis_windows(data_root),
        _alarm(metrics.get("closures")),
        "Predicted 6-h closure risk per hospital (red lines: closure starts; dashed: start of the held-out "
        "period, before it predictions are in-sample)",
        out_dir / "closure_timeline.png",
        pd.Timestamp(held[0]) if held else None,
    )


def _external_timeline(block, series: Path, out_dir: Path, suffix: str, label: str) -> Path:
    """An external city's own hospitals at every open hour (its closure_series.parquet), the primary model
    beside the generator's clairvoyant hazard; closure starts and crisis windows from the city's own root."""
    root = Path(block["split"]["root"])
    primary = block["closures"]["primary"]
    frame = pd.read_parquet(series)
    hourly = C.read_hourly(root)
    starts = None if hourly is None else hourly.loc[hourly["closure_start"], ["hospital", "time"]]
    missing = "" if starts is not None else f"; closure starts not shown: no system/hospital_hourly.parquet in {root}"
    return _timeline_plot(
        frame[frame["model"].isin([primary, "clairvoyant"])],
        starts,
        _crisis_windows(root),
        _alarm(block["closures"]),
        f"Predicted 6-h closure risk per hospital, {label}, every open hour (red lines: closure starts{missing})",
        out_dir / f"closure_timeline{suffix}.png",
    )


def _alarm(closures: dict | None) -> tuple[str, float] | None:
    """(primary model, its alarm threshold chosen on the development tuning hours), None without one."""
    if not closures or closures.get("primary") not in closures.get("models", {}):
        return None
    return closures["primary"], closures["models"][closures["primary"]]["threshold"]


def _timeline_plot(series, starts, shades, alarm, title: str, path: Path, held_out_start=None) -> Path:
    """One panel per hospital of `series` (hospital, time, model, risk): each source's risk, the alarm of
    `alarm` ((model, threshold)) as a band along the foot where its risk is at or above the threshold, closure
    starts (`starts`: hospital, time) as red lines, crisis windows shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hospitals = sorted(series["hospital"].astype(str).unique())
    fig, axes = plt.subplots(len(hospitals), 1, figsize=(14, 1.9 * len(hospitals) + 0.6), sharex=True, squeeze=False)
    for ax, h in zip(axes[:, 0], hospitals, strict=True):
        mine = {model: _hourly(g) for model, g in series[series["hospital"].astype(str) == h].groupby("model")}
        for model, risk in mine.items():
            ax.plot(
                risk.index, risk.to_numpy(), lw=0.7, label=LABELS.get(model, model), alpha=0.9, **model_style(model)
            )
        if alarm is not None and alarm[0] in mine:
            _alarm_band(ax, mine[alarm[0]], *alarm)
        if starts is not None:
            for t in starts.loc[starts["hospital"].astype(str) == h, "time"]:
                ax.axvline(t, color="red", lw=0.6, alpha=0.7)
        for a, b, name, color in shades:
            ax.axvspan(a, b, color=color, alpha=0.25, label=name, lw=0)
        if held_out_start is not None:
            ax.axvline(held_out_start, color="k", ls="--", lw=0.8)
        ax.set_ylabel(str(h).replace("Asklepios ", "A. "), fontsize=8)
        ax.set_ylim(0, 1)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=True))
    axes[0, 0].legend(uniq.values(), uniq.keys(), fontsize=7, ncol=6, loc="upper left")
    axes[0, 0].set_title(title, fontsize=9)
    return _save(plt, fig, path, dpi=80)


def _hourly(g: pd.DataFrame) -> pd.Series:
    """A source's risk (rows: time, risk) on every hour from its first to its last, NaN where it has no row:
    the hours a hospital is closed break the line instead of being bridged."""
    risk = g.set_index("time")["risk"].sort_index()
    return risk.reindex(pd.date_range(risk.index.min(), risk.index.max(), freq="h"))


def _alarm_band(ax, risk: pd.Series, model: str, threshold: float) -> None:
    """The alarm's threshold as a dotted line and the hours it stands as a band along the foot, both in the
    model's colour."""
    on = (risk >= threshold).to_numpy()
    ax.axhline(threshold, color=model_color(model), ls=":", lw=0.8)
    ax.fill_between(
        risk.index,
        0,
        ALARM_BAND,
        where=on,
        step="post",
        color=model_color(model),
        alpha=0.6,
        lw=0,
        label=f"alarm on ({LABELS.get(model, model)} >= {threshold:.2f}, tuning threshold)",
    )


def _crisis_windows(root: Path) -> list[tuple]:
    out = []
    drivers = root / "system" / "drivers.parquet"
    if drivers.exists():
        d = pd.read_parquet(drivers)
        if "heat_wave" in d and d["heat_wave"].any():
            t = d.loc[d["heat_wave"], "time"]
            out.append((t.min(), t.max(), "heat wave", "orange"))
        if "flu_share_expected" in d and d["flu_share_expected"].max() > 0:
            f = d["flu_share_expected"]
            t = d.loc[f >= FLU_WAVE_SHARE * f.max(), "time"]
            out.append((t.min(), t.max(), "flu wave", "tab:blue"))
    pw = root / "system" / "pathways.parquet"
    if pw.exists():
        p = pd.read_parquet(pw, columns=["mci_sk", "t_onset"])
        mci = p.loc[p["mci_sk"] >= 0, "t_onset"]
        if len(mci):
            out.append((mci.min() - pd.Timedelta(hours=2), mci.max() + pd.Timedelta(hours=10), "MANV", "purple"))
    return out
