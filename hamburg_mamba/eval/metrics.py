"""Discrimination, calibration and clinical-utility metrics for binary risk predictions (TRIPOD+AI).

Every metric accepts optional non-negative `weight`s, which is how the cluster bootstrap resamples: a pathway
drawn k times gives each of its rows weight k, so the rows of one patient stay together (they are not
independent). The point estimates with unit weights equal scikit-learn's (`tests/eval/test_metrics.py`).

Glossary: n prediction rows, y (n,) 0/1 labels, p (n,) predicted probabilities (or any score for the rank
metrics), w (n,) weights.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

ECE_BINS = 10  # equal-mass bins: with a low prevalence equal-width bins leave almost every row in the first bin
LOGIT_EPS = 1e-6  # probabilities are clipped to [eps, 1 - eps] before taking logits (calibration slope)
NEWTON_STEPS = 200  # logistic fits; converge in a handful of steps, nearly separable bootstrap replicates take dozens
BOOTSTRAP_ALPHA = 0.05  # 95 % intervals
MIN_FINITE_DRAWS = 10  # fewer finite replicates give no interval (a 2.5 % quantile of 9 draws is the minimum)
BOOTSTRAP_TOL = 1e-6  # Newton tolerance of the calibration fits inside bootstrap replicates
DECISION_THRESHOLDS = np.round(np.arange(0.01, 0.51, 0.01), 2)  # net benefit over clinically sensible thresholds


def _prep(y, p, w):
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    w = np.ones_like(y) if w is None else np.asarray(w, dtype=np.float64).ravel()
    if not (y.shape == p.shape == w.shape):
        raise ValueError(f"metrics: y, p and weight need one shape, got {y.shape}, {p.shape}, {w.shape}")
    if y.size and not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("metrics: y must be 0/1")
    if np.isnan(p).any():
        raise ValueError(f"metrics: p has {int(np.isnan(p).sum())} NaN values")
    if not (np.isfinite(w) & (w >= 0)).all():
        raise ValueError(f"metrics: weight must be finite and >= 0, got {w[~(np.isfinite(w) & (w >= 0))][:5]}")
    return y, p, w


def _probabilities(p) -> None:
    """Brier, ECE and the calibration fits read p as a probability: a logit or a score would give a number
    with no meaning (and logit() would clip it silently)."""
    if p.size and not ((p >= 0) & (p <= 1)).all():
        raise ValueError(f"metrics: p must be probabilities in [0, 1], got values in [{p.min()}, {p.max()}]")


def auroc(y, p, weight=None) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half); NaN when one class is absent."""
    y, p, w = _prep(y, p, weight)
    return _auroc_sorted(*_sort_by_score(y, p, w))


def _sort_by_score(y, p, w):
    order = np.argsort(p, kind="mergesort")
    return y[order], p[order], w[order]


def _tie_groups(p_sorted):
    """Start index of the tie group of each sorted row, and of the next group."""
    new = np.ones(p_sorted.size, bool)
    new[1:] = p_sorted[1:] != p_sorted[:-1]
    starts = np.flatnonzero(new)
    group = np.cumsum(new) - 1
    return group, starts


def _auroc_sorted(y, p, w, groups=None):
    wp, wn = w * y, w * (1 - y)
    P, N = wp.sum(), wn.sum()
    if P <= 0 or N <= 0:
        return float("nan")
    group, starts = groups if groups is not None else _tie_groups(p)
    neg_in_group = np.add.reduceat(wn, starts) if starts.size else np.zeros(0)
    neg_below_group = np.cumsum(neg_in_group) - neg_in_group
    # each positive beats the negatives in lower tie groups and ties half of those in its own
    credit = neg_below_group[group] + 0.5 * neg_in_group[group]
    return float((wp * credit).sum() / (P * N))


def average_precision(y, p, weight=None) -> float:
    """AUPRC as scikit-learn's average precision: sum over thresholds of (R_k - R_{k-1}) P_k."""
    y, p, w = _prep(y, p, weight)
    order = np.argsort(-p, kind="mergesort")
    return _ap_sorted_desc(y[order], p[order], w[order])


def _ap_sorted_desc(y, p, w):
    tp = np.cumsum(w * y)
    fp = np.cumsum(w * (1 - y))
    if tp.size == 0 or tp[-1] <= 0:
        return float("nan")
    last = np.r_[p[1:] != p[:-1], True]  # evaluate only at the end of each tie group (distinct thresholds)
    tp, fp = tp[last], fp[last]
    precision = tp / np.maximum(tp + fp, 1e-300)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def brier(y, p, weight=None) -> float:
    y, p, w = _prep(y, p, weight)
    _probabilities(p)
    return float(np.sum(w * (p - y) ** 2) / w.sum())


def prevalence(y, weight=None) -> float:
    y, _, w = _prep(y, np.zeros_like(np.asarray(y, dtype=float)), weight)
    return float(np.sum(w * y) / w.sum())


def ece(y, p, weight=None, bins: int = ECE_BINS) -> float:
    """Expected calibration error: sum over equal-mass bins of (bin weight share) |mean label - mean p|."""
    y, p, w = _prep(y, p, weight)
    _probabilities(p)
    order = np.argsort(p, kind="mergesort")
    return _ece_sorted(y[order], p[order], w[order], bins)


def _ece_sorted(y, p, w, bins: int = ECE_BINS) -> float:
    """ECE of rows sorted by p, with bins of equal weight mass.

    A row of weight k counts as k copies of itself, so a bin edge may fall inside a row, which then adds
    its share of weight to both bins: the bootstrap's weighted replicate (a pathway drawn k times) equals the
    ECE of the resampled rows written out, which bins by rows. Edges at row counts instead of weight mass made
    each replicate's bins unequal (measured 0.0025 off an ECE of 0.035 at 2,000 rows).
    """
    total = w.sum()
    if y.size == 0 or total <= 0:
        return float("nan")
    mass = np.r_[0.0, np.cumsum(w)]  # (n+1,) weight before each row; row i occupies [mass[i], mass[i+1])
    gap = np.r_[0.0, np.cumsum(w * (y - p))]  # (n+1,) label minus prediction mass before each row
    edges = np.linspace(0.0, total, bins + 1)
    if float(total).is_integer():  # counts (unit weights, bootstrap draws): whole rows, as unweighted binning
        edges = edges.round()
    # label-minus-prediction mass below each edge: the rows wholly below, plus the part of the straddling row
    i = np.clip(np.searchsorted(mass, edges, "right") - 1, 0, y.size - 1)
    below = gap[i] + (edges - mass[i]) * (y - p)[i]
    return float(np.sum(np.abs(np.diff(below))) / total)


def sigmoid(x) -> np.ndarray:
    """1 / (1 + exp(-x)) without overflow for large |x|."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


def logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), LOGIT_EPS, 1 - LOGIT_EPS)
    return np.log(p) - np.log1p(-p)


def fit_logistic(x, y, weight=None, steps: int = NEWTON_STEPS, tol: float = 1e-10) -> tuple[float, float]:
    """(intercept, slope) of the weighted logistic regression y ~ a + b x (unpenalised Newton-Raphson)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    w = np.ones_like(x) if weight is None else np.asarray(weight, dtype=np.float64).ravel()
    prev = np.sum(w * y) / w.sum()
    beta = np.array([np.log(prev / (1 - prev)) if 0 < prev < 1 else 0.0, 0.0])
    X = np.stack([np.ones_like(x), x], axis=1)
    for _ in range(steps):
        eta = X @ beta
        mu = sigmoid(eta)
        g = X.T @ (w * (y - mu))
        H = (X * (w * mu * (1 - mu))[:, None]).T @ X
        try:
            delta = np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            break
        if not np.isfinite(delta).all():
            break
        beta = beta + delta
        if np.max(np.abs(delta)) < tol:
            return float(beta[0]), float(beta[1])
    # No maximum: the classes are (quasi-)separated by x, so the likelihood keeps rising as the slope grows (a
    # bootstrap replicate of a rare outcome does this). Any finite number returned here would be arbitrary.
    return float("nan"), float("nan")


def calibration_slope_intercept(y, p, weight=None) -> tuple[float, float]:
    """Calibration slope (logistic regression of y on logit p) and calibration-in-the-large (intercept of
    y ~ offset(logit p)); ideal 1 and 0 (Van Calster et al. 2019)."""
    y, p, w = _prep(y, p, weight)
    _probabilities(p)
    return _calibration_fit(logit(p), y, w)


def _calibration_fit(lp, y, w, tol: float = 1e-10) -> tuple[float, float]:
    if not (0 < np.sum(w * y) < np.sum(w)):
        # one class only (a resample of a few hospital-days can draw no closure): no maximum exists, and the
        # intercept's Newton steps would walk off to wherever the iteration cap leaves them
        return float("nan"), float("nan")
    _, slope = fit_logistic(lp, y, w, tol=tol)
    # calibration-in-the-large: intercept with the slope fixed at 1, one-dimensional Newton on the offset model
    a = 0.0
    for _ in range(NEWTON_STEPS):
        mu = sigmoid(a + lp)
        g = np.sum(w * (y - mu))
        h = np.sum(w * mu * (1 - mu))
        if h <= 0:
            break
        step = g / h
        a += step
        if abs(step) < tol:
            break
    return slope, float(a)


def calibration_curve(y, p, bins: int = ECE_BINS) -> tuple[np.ndarray, np.ndarray]:
    """(mean predicted, observed rate) per equal-mass bin: the points of a reliability diagram."""
    y, p, _ = _prep(y, p, None)
    order = np.argsort(p, kind="mergesort")
    edges = np.linspace(0, y.size, bins + 1).round().astype(np.int64)
    mp, obs = [], []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        if b > a:
            mp.append(p[order[a:b]].mean())
            obs.append(y[order[a:b]].mean())
    return np.array(mp), np.array(obs)


def net_benefit(y, p, thresholds=DECISION_THRESHOLDS) -> dict[str, np.ndarray]:
    """Decision curve (Vickers and Elkin 2006): net benefit of treating rows with p >= t, of treating all
    and of treating none (0), for each threshold probability t."""
    y, p, _ = _prep(y, p, None)
    n = y.size
    t = np.asarray(thresholds, dtype=np.float64)
    odds = t / (1 - t)
    treat = p[None, :] >= t[:, None]  # (T, n)
    tp = (treat & (y[None, :] == 1)).sum(1) / n
    fp = (treat & (y[None, :] == 0)).sum(1) / n
    prev = y.mean()
    return {
        "threshold": t,
        "model": tp - fp * odds,
        "treat_all": prev - (1 - prev) * odds,
        "treat_none": np.zeros_like(t),
    }


def threshold_at_sensitivity(y, p, sensitivity: float) -> float:
    """Highest threshold t with sensitivity P(p >= t | y = 1) >= `sensitivity`."""
    y, p, _ = _prep(y, p, None)
    pos = np.sort(p[y == 1])[::-1]
    if pos.size == 0:
        return float("nan")
    k = int(np.ceil(sensitivity * pos.size)) - 1
    return float(pos[min(max(k, 0), pos.size - 1)])


def roc_points(y, p) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct threshold, from (0, 0) to (1, 1)."""
    y, p, _ = _prep(y, p, None)
    order = np.argsort(-p, kind="mergesort")
    ys, ps = y[order], p[order]
    last = np.r_[ps[1:] != ps[:-1], True]
    tp = np.cumsum(ys)[last]
    fp = np.cumsum(1 - ys)[last]
    P, N = max(ys.sum(), 1), max((1 - ys).sum(), 1)
    return np.r_[0.0, fp / N], np.r_[0.0, tp / P]


# ----------------------------------------------------------------------------------------------------------
# Bootstrap


@dataclass
class Estimate:
    """A point estimate with its percentile bootstrap interval (NaN where undefined)."""

    value: float
    low: float
    high: float

    def fmt(self, digits: int = 3) -> str:
        if not np.isfinite(self.value):
            return "n/a"
        if not (np.isfinite(self.low) and np.isfinite(self.high)):
            return f"{self.value:.{digits}f}"
        return f"{self.value:.{digits}f} ({self.low:.{digits}f}-{self.high:.{digits}f})"

    def as_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high}


BINARY_METRICS = ("auroc", "auprc", "brier", "ece", "calibration_slope", "calibration_intercept")


def binary_metrics(y, p, weight=None) -> dict[str, float]:
    """Every metric of BINARY_METRICS at one weighting (the bootstrap calls this once per replicate)."""
    y, p, w = _prep(y, p, weight)
    slope, intercept = calibration_slope_intercept(y, p, w)
    return {
        "auroc": auroc(y, p, w),
        "auprc": average_precision(y, p, w),
        "brier": brier(y, p, w),
        "ece": ece(y, p, w),
        "calibration_slope": slope,
        "calibration_intercept": intercept,
    }


def bootstrap_binary(
    y, p, cluster=None, n_boot: int = 200, seed: int = 0, metrics=BINARY_METRICS
) -> dict[str, Estimate]:
    """Point estimates and percentile 95 % intervals from a cluster bootstrap (clusters: e.g. subject ids;
    None = rows are independent). Returns metric -> Estimate, plus 'prevalence' and 'n'.

    Each replicate is the weighted metric with weight = how often the row's cluster was drawn (`cluster_draws`),
    computed on the rows sorted once (`_SortedSample`); equal to `binary_metrics(y, p, weight)`
    (tests/eval/test_metrics.py).
    """
    y, p, _ = _prep(y, p, None)
    if set(metrics) - {"auroc", "auprc"}:  # the rank metrics alone take any score
        _probabilities(p)
    sample = _SortedSample(y, p)
    point = sample.metrics(np.ones_like(y), metrics)
    draws = {m: [] for m in metrics}
    for counts in cluster_draws(cluster, y.size, n_boot, seed):
        rep = sample.metrics(counts[sample.order], metrics)
        for m in metrics:
            draws[m].append(rep[m])
    out = {m: Estimate(point[m], *percentile_interval(draws[m])) for m in metrics}
    out["prevalence"] = Estimate(float(y.mean()) if y.size else np.nan, np.nan, np.nan)
    out["n"] = Estimate(float(y.size), np.nan, np.nan)
    return out


def cluster_draws(cluster, n_rows: int, n_boot: int, seed: int = 0):
    """Yield n_boot (n_rows,) float64 weight vectors: how often each row's cluster was drawn when as many
    clusters as there are are drawn with replacement. Replicate r is the same for every caller with the same
    clusters and seed, so metrics of several models from these draws are paired. None = each row a cluster."""
    cluster = np.arange(n_rows) if cluster is None else np.asarray(cluster).ravel()
    if cluster.size != n_rows:
        raise ValueError(f"cluster: expected {n_rows} entries (one per row), got {cluster.size}")
    _, inverse = np.unique(cluster, return_inverse=True)
    n_clusters = int(inverse.max()) + 1 if n_rows else 0
    rng = np.random.default_rng(seed)
    for _ in range(n_boot if n_clusters > 1 else 0):
        counts = np.bincount(rng.integers(0, n_clusters, n_clusters), minlength=n_clusters)
        yield counts[inverse].astype(np.float64)


def percentile_interval(draws) -> tuple[float, float]:
    """(low, high) percentile interval of the finite draws; NaN with fewer than MIN_FINITE_DRAWS of them."""
    d = np.asarray(draws, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size < MIN_FINITE_DRAWS:
        return float("nan"), float("nan")
    lo, hi = np.quantile(d, [BOOTSTRAP_ALPHA / 2, 1 - BOOTSTRAP_ALPHA / 2])
    return float(lo), float(hi)


def paired_difference(y, p_a, p_b, cluster=None, n_boot: int = 200, seed: int = 0, metric: str = "auroc") -> Estimate:
    """metric(p_a) - metric(p_b) on the same rows, with the percentile interval of the difference over the
    same cluster draws as `bootstrap_binary` (seed for seed): each replicate scores both on one resample, so
    the interval carries the correlation of two models judged on the same patients."""
    y, p_a, _ = _prep(y, p_a, None)
    _, p_b, _ = _prep(y, p_b, None)
    a, b = _SortedSample(y, p_a), _SortedSample(y, p_b)
    point = a.metrics(np.ones_like(y), (metric,))[metric] - b.metrics(np.ones_like(y), (metric,))[metric]
    diffs = [
        a.metrics(w[a.order], (metric,))[metric] - b.metrics(w[b.order], (metric,))[metric]
        for w in cluster_draws(cluster, y.size, n_boot, seed)
    ]
    return Estimate(float(point), *percentile_interval(diffs))


class _SortedSample:
    """Rows sorted by score once; every metric of BINARY_METRICS for any weight vector in O(n)."""

    def __init__(self, y, p):
        self.order = np.argsort(p, kind="mergesort")
        self.y, self.p = y[self.order], p[self.order]
        self.groups = _tie_groups(self.p)
        self.lp = logit(self.p)

    def metrics(self, w, which=BINARY_METRICS) -> dict[str, float]:
        """The metrics named in `which` at weights w (in sorted order)."""
        y, p = self.y, self.p
        out = {}
        if "auroc" in which:
            out["auroc"] = _auroc_sorted(y, p, w, self.groups)
        if "auprc" in which:
            out["auprc"] = _ap_sorted_desc(y[::-1], p[::-1], w[::-1])
        if "brier" in which:
            out["brier"] = float(np.sum(w * (p - y) ** 2) / w.sum())
        if "ece" in which:
            out["ece"] = _ece_sorted(y, p, w)
        if "calibration_slope" in which or "calibration_intercept" in which:
            # replicates stop Newton at 1e-6: far below the interval widths, and 3x faster than the point fit
            out["calibration_slope"], out["calibration_intercept"] = _calibration_fit(self.lp, y, w, tol=BOOTSTRAP_TOL)
        unknown = set(which) - set(BINARY_METRICS)
        if unknown:
            raise ValueError(f"metrics: unknown {sorted(unknown)}; expected names from {BINARY_METRICS}")
        return out


def regression_metrics(y, yhat) -> dict[str, float]:
    y = np.asarray(y, dtype=np.float64)
    yhat = np.asarray(yhat, dtype=np.float64)
    if y.ndim != 1 or y.shape != yhat.shape:  # (n,) against (n, 1) would broadcast to (n, n)
        raise ValueError(f"regression_metrics: y and yhat need one shape (n,), got {y.shape} and {yhat.shape}")
    for name, v in (("y", y), ("yhat", yhat)):
        if not np.isfinite(v).all():
            raise ValueError(f"regression_metrics: {name} has {int((~np.isfinite(v)).sum())} NaN or inf values")
    resid = y - yhat
    ss_tot = np.sum((y - y.mean()) ** 2)
    return {
        "mae": float(np.mean(np.abs(resid))),
        "rmse": float(np.sqrt(np.mean(resid**2))),
        "r2": float(1 - np.sum(resid**2) / ss_tot) if ss_tot > 0 else float("nan"),
        "n": float(y.size),
    }


class PlattRecalibration:
    """Logistic recalibration p' = sigmoid(a + b logit p), fitted on the tuning split (Platt 1999)."""

    def __init__(self):
        self.intercept, self.slope = 0.0, 1.0
        self.separated = False  # True when the fitting rows admit no logistic map (identity kept)
        self.one_class = False  # True when the fitting rows hold one class (identity kept)

    def fit(self, y, p) -> PlattRecalibration:
        y, p, _ = _prep(y, p, None)
        if not 0 < y.sum() < y.size:
            # one class (or no rows): no slope can be fitted; the identity is kept, and said so
            self.one_class = True
            warnings.warn(
                f"PlattRecalibration: the {y.size} fitting rows hold one class; the identity is kept",
                RuntimeWarning,
                stacklevel=2,
            )
        else:
            intercept, slope = fit_logistic(logit(p), y)
            if np.isfinite(slope):
                self.intercept, self.slope = intercept, slope
            else:
                # p separates the classes on these rows (a clairvoyant reference does), so no logistic map
                # exists; the identity is kept and said so, rather than an arbitrary steep map.
                self.separated = True
                warnings.warn(
                    f"PlattRecalibration: p separates the classes on the {y.size} fitting rows; "
                    "no logistic map exists, the identity is kept",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return self

    def __call__(self, p) -> np.ndarray:
        return sigmoid(self.intercept + self.slope * logit(p))
