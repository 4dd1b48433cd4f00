"""The replicate summary's saturation check (eval/replicate.py) on a hand-built replicate folder: prediction files
whose shares above 0.9 are known by construction.

Each task is built so that one wrong reading changes a share or a verdict: a prediction of exactly 0.9 (not
above), unlabelled rows full of 0.99 and positives (the row set is the label mask), a task at exactly 5 %
prevalence (not rare) on which a model saturates, a model that saturates only before recalibration (the criterion
reads the raw probability), and a fair bound that puts as many rows above 0.9 as the model does.
"""

import json

import numpy as np
import pandas as pd
import pytest

from hamburg_mamba import cli
from hamburg_mamba.eval import replicate as R

N_EVENT, N_PATHWAY = 100, 40


def _event_table() -> pd.DataFrame:
    t = {}
    # icu: rows 0-79 labelled, 2 positives (prevalence 2 / 80 = 0.025); rows 80-99 unlabelled, all positive and
    # predicted 0.99 by everyone (with them: prevalence 22 / 100, not rare, and shares far above).
    mask = np.arange(N_EVENT) < 80
    t["icu|label"] = np.where(mask, 0.0, 1.0)
    t["icu|label"][[3, 7]] = 1.0
    t["icu|mask"] = mask
    mamba = np.full(N_EVENT, 0.01)
    mamba[[0, 1, 2]] = [0.95, 0.9, 0.899]  # one above 0.9: 1 / 80 = 1.25 %
    gru = np.full(N_EVENT, 0.02)
    gru[[4, 5]] = 0.9  # exactly 0.9 is not above: 0 %
    catboost = np.full(N_EVENT, 0.03)
    catboost[[0, 1]] = 0.92  # 2 / 80 = 2.5 %
    for name, raw in (("mamba", mamba), ("gru", gru), ("catboost", catboost)):
        raw[~mask] = 0.99
        t[f"icu|{name}"] = raw
    t["icu|mamba|recal"] = np.where(mask, 0.5, 0.99)  # recalibration pulls mamba's 0.95 down: 0 %
    t["icu|gru|recal"] = np.where(mask, 0.1, 0.99)
    t["icu|gru|recal"][6] = 0.97  # 1 / 80 = 1.25 % after recalibration
    t["icu|catboost|recal"] = catboost.copy()
    t["icu|oracle"] = np.full(N_EVENT, 0.99)  # a reference, never judged
    t["icu|fair_bound"] = np.where(mask, 0.0, 0.99)  # 0 % on the labelled rows

    # death: rows 0-49 labelled, 1 positive (2 %); the fair bound is above 0.9 on 2 of them and missing on one.
    mask = np.arange(N_EVENT) < 50
    t["death|label"] = np.zeros(N_EVENT)
    t["death|label"][10] = 1.0
    t["death|mask"] = mask
    bound = np.full(N_EVENT, 0.05)
    bound[[10, 11]] = 0.93
    bound[12] = np.nan
    bound[~mask] = 0.99
    t["death|fair_bound"] = bound  # 2 / 50 = 4 %
    mamba = np.full(N_EVENT, 0.04)
    mamba[[10, 20]] = 0.96  # 4 %: no more than the bound, passes
    gru = np.full(N_EVENT, 0.04)
    gru[[10, 20, 30]] = 0.96  # 6 % > 4 %: fails
    for name, raw in (("mamba", mamba), ("gru", gru)):
        t[f"death|{name}"] = raw
        t[f"death|{name}|recal"] = raw
    # closure: every row labelled, 5 positives: prevalence exactly 5 %, not rare, though every model saturates
    t["closure|label"] = (np.arange(N_EVENT) < 5).astype(np.float64)
    t["closure|mask"] = np.ones(N_EVENT, bool)
    for name in ("mamba", "gru"):
        t[f"closure|{name}"] = np.full(N_EVENT, 0.95)
        t[f"closure|{name}|recal"] = np.full(N_EVENT, 0.95)
    # load: a regression task (values far above 0.9), never checked
    t["load|label"] = np.full(N_EVENT, 3.0)
    t["load|mask"] = np.ones(N_EVENT, bool)
    t["load|mamba"] = np.full(N_EVENT, 3.0)
    return pd.DataFrame(t)


def _pathway_table() -> pd.DataFrame:
    # readmit: every pathway labelled, 1 positive (2.5 %); gru above 0.9 on one pathway (2.5 %), mamba never.
    label = np.zeros(N_PATHWAY)
    label[0] = 1.0
    gru = np.full(N_PATHWAY, 0.1)
    gru[0] = 0.97
    mamba = np.full(N_PATHWAY, 0.2)
    return pd.DataFrame(
        {
            "readmit|label": label,
            "readmit|mask": np.ones(N_PATHWAY, bool),
            "readmit|mamba": mamba,
            "readmit|mamba|recal": mamba,
            "readmit|gru": gru,
            "readmit|gru|recal": gru,
        }
    )


METRICS = {
    "models": ["mamba", "gru", "catboost", "oracle", "fair_bound"],
    "tasks": {
        t: {"kind": k, "models": {}}
        for t, k in (("icu", "binary"), ("death", "binary"), ("closure", "binary"), ("load", "regression"))
    }
    | {"readmit": {"kind": "binary", "models": {}}},
}


@pytest.fixture
def replicate_folder(tmp_path):
    eval_dir = tmp_path / "city-0" / "seed-1" / "eval"
    eval_dir.mkdir(parents=True)
    (eval_dir / R.METRICS_FILE).write_text(json.dumps(METRICS))
    _event_table().to_parquet(eval_dir / "predictions.parquet", index=False)
    _pathway_table().to_parquet(eval_dir / "pathway_predictions.parquet", index=False)
    return R.ReplicateConfig(
        out=tmp_path,
        recipe=cli.replicate_recipe(tiny=True),
        generator_seeds=(0,),
        training_seeds=(1,),
        backbones=("mamba", "gru"),
        tiny=True,
    )


def test_shares_prevalence_filter_and_rows_by_hand(replicate_folder):
    check = R.replicate_record(replicate_folder, 0, 1)["saturation"]
    assert set(check["checked"]) == {"icu", "death", "readmit"}
    assert check["not_checked"] == {"closure": pytest.approx(0.05)}  # load is a regression task: not listed
    icu = check["checked"]["icu"]
    assert icu["rows"] == 80 and icu["prevalence"] == pytest.approx(2 / 80) and icu["fair_bound"] == 0.0
    assert set(icu["models"]) == {"mamba", "gru", "catboost"}  # the oracle and the bound are references
    assert icu["models"]["mamba"] == {"raw": 1 / 80, "recalibrated": 0.0, "max": 0.95, "passes": False}
    assert icu["models"]["gru"] == {"raw": 0.0, "recalibrated": 1 / 80, "max": 0.9, "passes": True}
    assert icu["models"]["catboost"]["raw"] == 2 / 80 and not icu["models"]["catboost"]["passes"]
    death = check["checked"]["death"]
    assert death["rows"] == 50 and death["fair_bound"] == 2 / 50 and death["fair_bound_missing"] == 1
    assert death["models"]["mamba"]["raw"] == 2 / 50 and death["models"]["mamba"]["passes"]
    assert death["models"]["gru"]["raw"] == 3 / 50 and not death["models"]["gru"]["passes"]
    readmit = check["checked"]["readmit"]
    assert readmit["rows"] == N_PATHWAY and readmit["fair_bound"] is None
    assert readmit["models"]["gru"]["raw"] == 1 / 40 and not readmit["models"]["gru"]["passes"]
    assert readmit["models"]["mamba"] == {"raw": 0.0, "recalibrated": 0.0, "max": 0.2, "passes": True}


def test_summary_writes_the_verdict_and_the_table(replicate_folder):
    records = [R.replicate_record(replicate_folder, 0, 1)]
    R.write_summary(replicate_folder, records, seconds=60.0)
    written = json.loads((replicate_folder.out / "replicates.json").read_text())
    verdict = written["saturation"]
    assert (verdict["threshold"], verdict["max_share"], verdict["criterion_reads"]) == (0.9, 0.01, "raw")
    assert not verdict["holds"]
    failing = sorted((f["task"], f["model"]) for f in verdict["failures"])
    assert failing == [("death", "gru"), ("icu", "catboost"), ("icu", "mamba"), ("readmit", "gru")]
    assert written["replicates"][0]["saturation"]["checked"]["icu"]["models"]["mamba"]["raw"] == 1 / 80
    readme = (replicate_folder.out / "README.md").read_text()
    assert "| 0 | 1 | icu | 0.0250 | 80 | 0.00 % | mamba | 1.25 % | 0.00 % | 0.950 | FAIL |" in readme
    assert "| 0 | 1 | death | 0.0200 | 50 | 4.00 % | mamba | 4.00 % | 4.00 % | 0.960 | pass |" in readme
    assert "| 0 | 1 | readmit | 0.0250 | 40 | - | gru | 2.50 % | 2.50 % | 0.970 | FAIL |" in readme
    assert "**does NOT hold**" in readme and "closure (0.050)" in readme


def test_a_failure_of_a_model_that_is_no_backbone_leaves_the_criterion_holding():
    entry = {"prevalence": 0.02, "rows": 10, "fair_bound": None, "models": {}}
    entry["models"]["mamba"] = {"raw": 0.0, "recalibrated": 0.0, "max": 0.3, "passes": True}
    entry["models"]["catboost"] = {"raw": 0.1, "recalibrated": 0.0, "max": 0.95, "passes": False}
    record = {"generator_seed": 0, "training_seed": 0, "saturation": {"checked": {"icu": entry}, "not_checked": {}}}
    verdict = R.saturation_verdict([record], backbones=("mamba",))
    assert verdict["holds"] and [f["model"] for f in verdict["failures"]] == ["catboost"]
    assert verdict["backbones_checked"] == ["mamba"]


def test_a_missing_prediction_is_counted_and_one_outside_0_1_refused_by_column():
    table = _event_table()
    table.loc[0, "icu|mamba"] = np.nan  # mamba's one row above 0.9 becomes a row without a prediction
    mamba = R.task_saturation(table, "icu", ["mamba"])["models"]["mamba"]
    assert mamba["raw"] == 0.0 and mamba["missing"] == 1
    table.loc[1, "icu|gru"] = 1.5
    with pytest.raises(ValueError, match="'icu\\|gru' has 1 values outside"):
        R.task_saturation(table, "icu", ["gru"])
