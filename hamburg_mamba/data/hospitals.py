"""Hospital descriptors: what a model can know of a hospital, attached to every event as numeric features.

Glossary: N events (flat), K descriptor columns, H hospitals of the table.

A hospital's name is an identity: a model that embeds it learns one vector per training hospital and has nothing
but the "unknown" vector for a hospital it never saw, so every hospital of another city collapses into one.
Descriptors place a hospital among the others by what any hospital can report of itself: its size (ED visits
per year, beds) and its level of care (G-BA Notfallstufe 1-3). The table has one row per hospital (a MEDS
folder's metadata/hospitals.parquet, which the synthetic city writes; any table with a `hospital` column and
numeric columns works), and each event gets, as numeric features,

    hospital:<column>  the value of the hospital its record holds at the event's time

The hospital is the one known at the event (the connector's `event_hospital_name`: its own `hospital`, else the
latest earlier one of its pathway), so an ambulance before its destination is chosen, and a static fact, get the
"missing" flag, never the destination's size ahead of time. A hospital absent from the table, or a missing value
in it, is missing too, counted in the connector's report.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from hamburg_mamba.data.validate import Accounting, DataValidationError

# What the synthetic city's table holds (synthetic.hospital.hospital_frame), and the descriptors used if none are named:
# annual ED visits and inpatient beds for size, the level of care for the kind of hospital.
DEFAULT_DESCRIPTOR_COLUMNS = ("ed_visits_per_year", "beds", "care_level")
PREFIX = "hospital:"
NAME_COLUMN = "hospital"


def feature_names(columns: Sequence[str]) -> tuple[str, ...]:
    """The numeric feature names the descriptor columns add, in the order `descriptor_features` returns them."""
    return tuple(PREFIX + c for c in columns)


def resolve_columns(table: pd.DataFrame, columns: Sequence[str] | None) -> tuple[str, ...]:
    """The descriptor columns to use: `columns` as given (distinct), or DEFAULT_DESCRIPTOR_COLUMNS in the table."""
    if columns is None:
        found = tuple(c for c in DEFAULT_DESCRIPTOR_COLUMNS if c in table.columns)
        if not found:
            raise DataValidationError(
                "hospital_table",
                f"none of the default descriptor columns "
                f"{list(DEFAULT_DESCRIPTOR_COLUMNS)} is present (columns: {list(table.columns)});"
                f" pass hospital_columns=[...] naming the numeric columns to use",
            )
        return found
    columns = tuple(columns)
    if len(set(columns)) != len(columns) or NAME_COLUMN in columns:
        raise ValueError(
            f"hospital_columns: expected distinct column names other than {NAME_COLUMN!r}, got {list(columns)}"
        )
    return columns


def check_hospital_table(table: pd.DataFrame, columns: Sequence[str], acc: Accounting) -> pd.DataFrame:
    """(H, K) float64 indexed by hospital name (str), NaN = missing. Rows without a name are dropped and counted;
    a repeated name, a non-numeric column and infinite or negative values fail (sizes, counts and levels are
    never negative; one wrong sign would pass as a tiny hospital)."""
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"hospital_table: expected a pandas DataFrame, got {type(table).__name__}")
    for col in (NAME_COLUMN, *columns):
        if col not in table.columns:
            raise DataValidationError(col, f"missing from hospital_table (columns: {list(table.columns)})")
    out = pd.DataFrame(index=table.index)
    for col in columns:
        s = table[col]
        if not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)):
            raise DataValidationError(
                col, f"hospital_table columns must be numeric, got dtype {s.dtype}", table[[NAME_COLUMN, col]]
            )
        out[col] = s.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        bad = np.isinf(out[col].to_numpy()) | (out[col].to_numpy() < 0)
        if bad.any():
            raise DataValidationError(
                col, "hospital_table: expected finite values >= 0", table[[NAME_COLUMN, col]][bad], int(bad.sum())
            )
    unnamed = table[NAME_COLUMN].isna().to_numpy()
    if unnamed.any():
        acc.notes.append(f"hospital_table: {int(unnamed.sum())} rows without a hospital name ignored")
    out, names = out[~unnamed], table[NAME_COLUMN][~unnamed].astype(str)
    dup = names.duplicated(keep=False).to_numpy()
    if dup.any():
        raise DataValidationError(
            NAME_COLUMN, "hospital_table has several rows for the same hospital", table[~unnamed][dup], int(dup.sum())
        )
    return out.set_axis(pd.Index(names.to_numpy(), name=NAME_COLUMN))


def descriptor_features(
    table: pd.DataFrame, event_hospital: np.ndarray, timed: np.ndarray, acc: Accounting
) -> np.ndarray:
    """(N, K) float64: each event's hospital's row of `table` (from `check_hospital_table`); NaN where the event
    has no known hospital (None), is a static fact (timed False), or its hospital is not in the table."""
    names = pd.Series(event_hospital, dtype="object")
    known = names.notna().to_numpy() & timed
    row = table.index.get_indexer(names.where(known, "").astype(str))
    row = np.where(known, row, -1)
    values = np.concatenate([table.to_numpy(dtype=float), np.full((1, table.shape[1]), np.nan)])  # last: missing
    out = values[row]  # (N, K); row -1 reads the missing row
    absent = known & (row < 0)
    unlisted = sorted(set(names[absent]))
    acc.notes.append(
        f"hospital descriptors ({table.shape[1]} columns): attached to {int((row >= 0).sum())} of {int(timed.sum())} "
        f"timed events; missing for {int((timed & ~known).sum())} events without a known hospital, "
        f"{int(absent.sum())} of hospitals absent from the hospital table" + (f" {unlisted}" if unlisted else "")
    )
    return out
