"""Baselines scored at the same prediction rows as the neural models: CatBoost, NEWS2 and the oracle.

CatBoost gets the tabular features of `features.FeatureBuilder` (latest vitals, counts, hours since each last
measurement, system load), one model per task, early-stopped on the tuning split. NEWS2 is the published score
(news2.py) mapped to a probability by a logistic fit on the tuning split (monotone: its ranking, hence AUROC, is
the score's own). The oracle is the generator's true probability behind each label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hamburg_mamba.eval.metrics import fit_logistic, sigmoid
from hamburg_mamba.eval.news2 import news2_score

# Deterioration tasks NEWS2 is meant for (docs/domain.md, "Early-warning baselines").
NEWS2_TASKS = ("adverse_event", "icu_transfer", "in_hospital_death")


@dataclass
class CatBoostSettings:
    iterations: int = 400  # with early stopping on tuning (50 rounds) most tasks stop well before
    depth: int = 6
    learning_rate: float = 0.08
    max_train_rows: int = 60_000  # random subsample of training rows per task (2-core time budget)
    early_stopping_rounds: int = 50
    thread_count: int = 2
    seed: int = 0


def fit_catboost(task_kind: str, X_train, y_train, X_tune, y_tune, cat_features, settings: CatBoostSettings):
    from catboost import CatBoostClassifier, CatBoostRegressor

    rng = np.random.default_rng(settings.seed)
    if len(y_train) > settings.max_train_rows:
        keep = np.sort(rng.choice(len(y_train), settings.max_train_rows, replace=False))
        X_train, y_train = X_train.iloc[keep], y_train[keep]
    common = dict(
        iterations=settings.iterations,
        depth=settings.depth,
        learning_rate=settings.learning_rate,
        random_seed=settings.seed,
        thread_count=settings.thread_count,
        verbose=False,
        allow_writing_files=False,
        cat_features=cat_features,
    )
    if task_kind == "binary":
        model = CatBoostClassifier(loss_function="Logloss", **common)
    else:
        model = CatBoostRegressor(loss_function="RMSE", **common)
    use_eval = len(y_tune) > 0 and (task_kind != "binary" or 0 < np.sum(y_tune) < len(y_tune))
    model.fit(
        X_train,
        y_train,
        eval_set=(X_tune, y_tune) if use_eval else None,
        early_stopping_rounds=settings.early_stopping_rounds if use_eval else None,
        use_best_model=use_eval,
    )
    return model


def catboost_predict(model, task_kind: str, X) -> np.ndarray:
    if task_kind == "binary":
        return model.predict_proba(X)[:, 1]
    return model.predict(X)


class News2Baseline:
    """NEWS2 aggregate per row, and its logistic map to a probability per task (fitted on tuning)."""

    def __init__(self):
        self.coef: dict[str, tuple[float, float]] = {}
        self.missing: dict[str, int] = {}

    @staticmethod
    def score(features, rows) -> tuple[np.ndarray, dict[str, int]]:
        return news2_score(features.news2_vitals(rows))

    def fit(self, task: str, score: np.ndarray, y: np.ndarray) -> None:
        self.coef[task] = fit_logistic(score, y)

    def probability(self, task: str, score: np.ndarray) -> np.ndarray:
        a, b = self.coef[task]
        return sigmoid(a + b * np.asarray(score, dtype=np.float64))
