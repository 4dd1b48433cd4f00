"""The report's TRIPOD+AI sections: intended use, participants, outcomes and prediction times, missing data,
sample size, model specifications and limitations (Collins GS, Moons KGM, Dhiman P, et al. TRIPOD+AI
statement: updated guidance for reporting clinical prediction models that use regression or machine learning
methods. BMJ 2024;385:e078378). Item numbers in the headings are the checklist's: 3 background and intended
users, 5 data sources, 8 outcome, 9 predictors, 10 sample size, 11 missing data, 12 analytical methods, 16
differences between development and evaluation data, 20 participants, 22 model specification, 23 model
performance, 26 limitations, 27 usability in the context of current care.

Everything numeric is read from the evaluation's metrics.json (`participants.study_record`) and from the run
folders it names (config.json, train_config.json, train_summary.json); the prose states what the code does.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

# task -> (outcome, when it is predicted, who acts on the alert). Definitions as the generator labels them
# (docs/data.md, "Labels"); prediction rows as predictions.py lays them out.
OUTCOMES = {
    "adverse_event": (
        "an adverse event (deterioration needing intervention) in (t, t + 24 h]; unlabelled at "
        "and after the patient's adverse event",
        "the last event of each timestamp of the pathway (every new vital sign, order, move)",
        "ward or ED nurse in charge and the physician on call: bedside review, escalation to the rapid response team",
    ),
    "icu_transfer": (
        "ICU admission in (t, t + 24 h]; unlabelled once in the ICU",
        "as adverse_event",
        "physician on call and the ICU outreach team: review, earlier ICU consult",
    ),
    "in_hospital_death": (
        "death after t during the pathway; unlabelled at and after death",
        "as adverse_event",
        "treating team: goals-of-care review, senior review",
    ),
    "readmission_30d": (
        "a new pathway within 30 days of discharge; unlabelled if the patient died or was not "
        "discharged inside the data",
        "once per pathway, at its last event (discharge)",
        "discharge planning / case management: follow-up before the patient leaves",
    ),
    "unit_workload": (
        "patients per nurse present in the event's unit in the next shift (regression)",
        "as adverse_event",
        "nursing shift manager: staffing of the next shift",
    ),
    "ratio_violation_next_shift": (
        "the event's unit breaks its PpUGV patients-per-nurse limit in the next shift; unlabelled in the ED",
        "as adverse_event",
        "nursing shift manager: call in staff or move patients before the shift",
    ),
    "closure_6h": (
        "the hospital the event knew starts a closure to ambulances in the next 6 whole hours",
        "as adverse_event; scored per open hospital-hour (closures.py)",
        "ED lead physician and bed manager, with the EMS dispatch centre: free beds, divert early",
    ),
    "closure_12h": ("as closure_6h, within 12 h", "as closure_6h", "as closure_6h"),
    "closure_24h": ("as closure_6h, within 24 h", "as closure_6h", "as closure_6h"),
}
SPLIT_NAMES = {
    "train": "development (training)",
    "tuning": "tuning (early stopping, recalibration, thresholds)",
    "held_out": "evaluation (held out)",
}
MODEL_FIELDS = ("backbone", "d_model", "n_layers", "d_state", "n_heads", "attn_every", "dropout")
TRAIN_FIELDS = (
    "seed",
    "epochs",
    "max_steps",
    "batch_size",
    "lr",
    "weight_decay",
    "warmup_steps",
    "eval_max_pathways",
    "patience",
    "task_weighting",
)
WEIGHTS_FILE = "model.safetensors"  # the kept checkpoint's weights in a run folder (train/checkpoint.py)
HOURS_SHOWN_AS_DAYS = 48  # longer horizons read as days (readmission: 30 d, not 720 h)
REPLICATE_HINT = "hamburg-mamba replicate --out runs/replicate"  # the spread over seeds (replicate.py)


def sections(metrics: dict, primary: str) -> list[str]:
    """Markdown lines of the TRIPOD+AI sections, in the checklist's order."""
    runs = run_specifications(metrics.get("run_folders", {}))
    return (
        _intended_use(metrics)
        + _participants(metrics)
        + _outcomes(metrics)
        + _missing_data(metrics)
        + _sample_size(metrics)
        + _models(metrics, runs)
        + _model_evaluation(metrics)
        + _limitations(metrics, runs, primary)
    )


def run_specifications(folders: dict[str, str]) -> dict[str, dict]:
    """name -> {"config", "train_config", "train_summary", "parameters"} read from each run folder; a folder or
    file that is gone is reported as {"missing": what}, not skipped."""
    out = {}
    for name, folder in folders.items():
        entry = {}
        for key in ("config", "train_config", "train_summary"):
            path = Path(folder) / f"{key}.json"
            try:
                entry[key] = json.loads(path.read_text())
            except (OSError, ValueError) as e:
                entry.setdefault("missing", []).append(f"{path} ({type(e).__name__})")
        try:
            entry["parameters"] = parameter_count(Path(folder) / WEIGHTS_FILE)
        except (OSError, ValueError) as e:
            entry.setdefault("missing", []).append(f"{Path(folder) / WEIGHTS_FILE} ({type(e).__name__})")
        out[name] = entry
    return out


def parameter_count(weights: Path) -> int:
    """Elements of every tensor in a safetensors file, read from its header (no weights loaded)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), framework="pt") as f:
            return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    except SafetensorError as e:
        raise ValueError(f"{weights}: not a safetensors file ({e})") from None


def _intended_use(metrics) -> list[str]:
    cl = metrics.get("closures")
    closure = (
        f", the closure alarm at <= {cl['max_false_alarms_per_week_on_tuning']:g} false firings per "
        f"hospital-week on the tuning hours"
        if cl
        else ""
    )
    lines = [
        "## Intended use (TRIPOD+AI items 3, 27)",
        "",
        "Decision support, not autonomous decisions: every alert goes to a person who reviews the patient or "
        "the hospital's state and decides. Intended setting: emergency departments, wards and ICUs of the "
        "Hamburg hospitals in the data, and the ambulance dispatch that serves them. The alert threshold of "
        f"each patient task is set on the tuning period at {100 * metrics.get('alert_sensitivity', 0):.0f} % "
        f"sensitivity{closure}.",
        "",
        "| task | who acts on the alert |",
        "|---|---|",
    ]
    lines += [f"| {t} | {OUTCOMES[t][2]} |" for t in metrics["tasks"] if t in OUTCOMES]
    return lines + [
        "",
        "These models were developed on synthetic data and are not for clinical use (see Limitations).",
        "",
    ]


def _participants(metrics) -> list[str]:
    parts = metrics.get("participants")
    if not parts:
        return [
            "## Participants (TRIPOD+AI item 20)",
            "",
            "- not recorded by this evaluation (rerun `hamburg-mamba evaluate`)",
            "",
        ]
    periods = metrics.get("periods", {})
    columns = [(SPLIT_NAMES[s], parts[s], periods.get(s)) for s in ("train", "tuning", "held_out") if s in parts]
    for city, block in metrics.get("external", {}).items():
        if "held_out" in block.get("participants", {}):
            period = block.get("periods", {}).get("held_out")
            columns.append((f"external validation ({city})", block["participants"]["held_out"], period))
    head = "| | " + " | ".join(name for name, _, _ in columns) + " |"
    lines = [
        "## Participants (TRIPOD+AI items 5, 20)",
        "",
        f"Source: the synthetic Hamburg in `{metrics['split']['root']}`, split `{metrics['split']['split']}` "
        f"by each patient's first pathway (a patient is in one split only). Counts as analysed: labels after "
        f"a split's own period are hidden (the data accounting below counts them). Pathways: one emergency "
        f"episode from the ambulance or ED arrival to discharge or death.",
        "",
        head,
        "|" + "---|" * (len(columns) + 1),
    ]
    row = lambda name, f: lines.append(f"| {name} | " + " | ".join(f(part) for _, part, _ in columns) + " |")
    lines.append("| period | " + " | ".join(f"{p[0][:10]} .. {p[1][:10]}" if p else "-" for _, _, p in columns) + " |")
    row("patients", lambda p: f"{p['patients']:,}")
    row("pathways", lambda p: f"{p['pathways']:,}")
    row("events", lambda p: f"{p['events']:,}")
    row("age, median (IQR) years", lambda p: _age(p["age"]))
    for field, title in (
        ("sex", "sex"),
        ("triage_group", "Manchester triage group (1 = immediate)"),
        ("arrival_mode", "arrival mode"),
    ):
        levels = sorted({lvl for _, part, _ in columns for lvl in part.get(field, {})})
        for lvl in levels:
            row(f"{title}: {lvl}", lambda p, f=field, v=lvl: _share(p.get(f, {}).get(v, 0), p["pathways"]))
    tasks = [t for t in metrics["tasks"] if any(t in part["outcomes"] for _, part, _ in columns)]
    for t in tasks:
        row(f"{t}: with outcome / labelled pathways (rows)", lambda p, t=t: _outcome(p["outcomes"].get(t)))
    return lines + [""]


def _age(a: dict) -> str:
    if a["median"] is None or a["median"] != a["median"]:
        return "-"
    extra = f"; {a['not_recorded']} not recorded" if a["not_recorded"] else ""
    return f"{a['median']:.0f} ({a['q1']:.0f}-{a['q3']:.0f}){extra}"


def _share(count: int, total: int) -> str:
    return f"{count:,} ({100 * count / total:.0f} %)" if total else "-"


def _outcome(o: dict | None) -> str:
    if o is None:
        return "-"
    if "positive_pathways" not in o:
        mean = "-" if o.get("mean") is None else f"{o['mean']:.2f}"
        return f"mean {mean} over {o['rows']:,} rows"
    return f"{o['positive_pathways']:,} / {o['pathways']:,} ({o['positive_rows']:,} of {o['rows']:,})"


def _outcomes(metrics) -> list[str]:
    horizons = metrics.get("task_horizons_h", {})
    lines = [
        "## Outcomes and prediction times (TRIPOD+AI items 8, 9)",
        "",
        "A prediction at time t may use every event up to and including t (MEDS `prediction_time`), and the "
        "hospital status feed as published an hour earlier. Every model is scored at the same rows.",
        "",
        "| task | outcome | horizon | prediction time | scored unit |",
        "|---|---|---|---|---|",
    ]
    for t, r in metrics["tasks"].items():
        outcome, when, _ = OUTCOMES.get(t, ("(not described)", "-", "-"))
        h = horizons.get(t)
        cluster = f"{r['cluster']} clusters, " if r.get("cluster") else ""
        lines.append(f"| {t} | {outcome} | {_horizon(h, t in horizons)} | {when} | {cluster}{r['level']}-level |")
    return lines + [""]


def _horizon(hours, known: bool) -> str:
    if hours is None:
        return "until the pathway ends" if known else "-"
    return f"{hours / 24:g} d" if hours >= HOURS_SHOWN_AS_DAYS else f"{hours:g} h"


def _missing_data(metrics) -> list[str]:
    miss = metrics.get("news2_missing_vitals", {}).get("held_out") or {}
    worst = max(miss.values()) if miss else 0
    return [
        "## Missing data (TRIPOD+AI item 11)",
        "",
        "- No imputation. A measurement that was not taken is an event that did not happen: the sequence "
        "models see only the events recorded; a numeric feature absent from an event enters as a learned "
        "'missing' vector, never as 0 (nn/encoder.py).",
        "- CatBoost reads 'latest value' and 'hours since' as missing (NaN, CatBoost's own missing-value "
        "split) before a vital's first measurement.",
        f"- NEWS2 scores 0 points for a parameter never measured up to the row (RCP 2017 practice); held-out "
        f"rows missing a parameter: up to {worst:,}.",
        "- Hospital status feed: missing where no hospital is known yet (before the ambulance's destination) "
        "or the feed is older than its maximum age; every model sees it as missing.",
        "- Outcomes: a label is missing where it is undefined (after the event, in the ICU, in the ED for the "
        "staffing task) or falls after its split's period; such rows are not scored and are counted in the "
        "participant table (labelled rows) and the data accounting.",
        "",
    ]


def _sample_size(metrics) -> list[str]:
    parts = metrics.get("participants", {})
    lines = [
        "## Sample size (TRIPOD+AI item 10)",
        "",
        "No sample size was calculated in advance: the city's size (days, share of Hamburg's ED volume) was "
        "set by what trains on two CPU cores within the demo's budget. The effective size of a rare outcome "
        "is its number of pathways with the outcome:",
        "",
    ]
    train, held = parts.get("train", {}).get("outcomes", {}), parts.get("held_out", {}).get("outcomes", {})
    for t, r in metrics["tasks"].items():
        if r["kind"] == "binary" and t in train:
            lines.append(
                f"- {t}: {train[t]['positive_pathways']:,} training pathways with the outcome, "
                f"{held.get(t, {}).get('positive_pathways', 0):,} held out"
            )
    return lines + [""]


def _models(metrics, runs: dict) -> list[str]:
    lines = ["## Models (TRIPOD+AI items 12, 22)", ""]
    if runs:
        head = ["model", *MODEL_FIELDS, "parameters", *TRAIN_FIELDS, "steps run", "stopped", "kept step"]
        lines += [
            "Neural models, from each run folder's config.json, train_config.json and train_summary.json "
            "(AdamW, warmup then cosine decay, gradient clip; the checkpoint with the lowest tuning loss is "
            "kept):",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        for name, spec in runs.items():
            if "missing" in spec:
                lines.append(f"| {name} | run files missing: {'; '.join(spec['missing'])} |")
                continue
            cfg, tc, summ = spec["config"], spec["train_config"], spec["train_summary"]
            cells = [
                name,
                *(_cell(cfg.get(f)) for f in MODEL_FIELDS),
                f"{spec['parameters']:,}",
                *(_cell(tc.get(f)) for f in TRAIN_FIELDS),
                _cell(summ.get("steps")),
                _cell(summ.get("stopped")),
                _cell(summ.get("best_step")),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    cb = metrics.get("catboost_settings")
    if cb and "catboost" in metrics["models"]:
        lines.append(
            "- CatBoost: one model per task on the tabular features of eval/features.py; "
            + ", ".join(f"{k} {v}" for k, v in cb.items())
            + " (early stopping on the tuning rows)."
        )
    if "news2" in metrics["models"]:
        lines.append(
            "- NEWS2: the RCP 2017 table, mapped to a probability per task by a logistic fit on the tuning "
            "rows (the ranking is the score's own)."
        )
    lines += [
        "- Recalibration: Platt scaling (logistic on logit p) fitted on the tuning rows, applied to the held-out "
        "rows; the calibration and decision-curve plots show the recalibrated probabilities.",
        "- The fair bound (P(label | simulator state at t)) and the clairvoyant oracle are references computed "
        "by the generator, not models.",
        "",
    ]
    return lines


def _model_evaluation(metrics) -> list[str]:
    """How the models were evaluated: temporal validation on the held-out period and, where run, external
    validation on other cities with every model, map and threshold frozen."""
    external = metrics.get("external", {})
    lines = [
        "## Model evaluation (TRIPOD+AI items 12, 16, 23)",
        "",
        "- Temporal validation: the held-out period follows the development periods (training, tuning) in the "
        "same city; its rows were used for nothing but scoring.",
    ]
    if not external:
        return lines + ["- External validation: not run (`run_comparison(external=...)` scores another city).", ""]
    for city, block in external.items():
        period = block.get("periods", {}).get("held_out") or ["-", "-"]
        unseen = block.get("unseen_hospitals", [])
        seen = [h for h in block.get("hospitals", []) if h not in unseen]
        lines.append(
            f"- External validation ({city}, `{block['split']['root']}`): every pathway of another city, "
            f"{period[0][:10]} .. {period[1][:10]}; hospitals the models never saw: {', '.join(unseen) or 'none'} "
            f"(they enter through their descriptors and status feed, the hospital vocabulary reads them as "
            f"unknown); hospitals also in the development data: {', '.join(seen) or 'none'}."
        )
    return lines + [
        "- On the external cities the models, CatBoost and NEWS2 are applied unchanged: the schema (vocabulary, "
        "normalisation) of the development training split, CatBoost as fitted on it, NEWS2's maps, the Platt "
        "recalibration and every alert and closure-alarm threshold as chosen on the development tuning split. "
        "The metrics, cluster bootstrap and paired comparisons are the held-out period's; closures are scored "
        "per open hour of the external city's own hospitals; the fair bound is the city's own where it was "
        "generated.",
        "",
    ]


def _cell(value) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _period_limitation(metrics) -> str:
    external = list(metrics.get("external", {}))
    if not external:
        return (
            "- **One period.** The held-out period is a single later period (temporal validation); no other site "
            "or year was evaluated."
        )
    return (
        f"- **Synthetic external cities.** Beside the held-out period, the external validation on "
        f"{', '.join(external)} tests other hospitals and another season, but the city was drawn by the same "
        f"generator with the same hazards: it tests transport across hospitals and time, not across the "
        f"mechanisms that produce real data."
    )


def _limitations(metrics, runs: dict, primary: str) -> list[str]:
    seeds = {n: s["train_config"].get("seed") for n, s in runs.items() if "train_config" in s}
    seed_text = ", ".join(f"{n} {s}" for n, s in seeds.items()) or "none recorded"
    return [
        "## Limitations (TRIPOD+AI item 26)",
        "",
        "- **Synthetic data.** Every patient, outcome and closure was drawn by the generator "
        "(hamburg_mamba/data/synthetic/); no result here says how the models would do on real patients.",
        "- **The generator and the models share assumptions.** The generator's hazards read the vitals, the "
        "triage group and the hospital's NEDOCS that the models are given, with the functional forms its "
        "authors chose; a model can only rediscover them, and real data will hold risks nobody put in.",
        f"- **One seed.** This report is one training seed per model ({seed_text}) on one generated city; the "
        f"95 % intervals are over held-out patients (clusters), not over training runs or cities. The spread "
        f"over seeds and cities, and how often {primary} beats each other model, come from `{REPLICATE_HINT}` "
        f"(docs/experiments.md, Replication).",
        _period_limitation(metrics),
        "- **Few events.** Rare outcomes have few pathways with the outcome (Sample size above); their "
        "intervals are wide and their calibration plots rest on few events.",
        "",
    ]
