"""Hamburg emergency-care pathway data: synthetic generator, MEDS files, DataFrame connector.

Never imports `hamburg_mamba.nn` or `hamburg_mamba.ops`. torch loads only when a batch name is used
(`PathwayBatch`), so generating and converting files needs numpy, pandas and pyarrow alone.
"""

from __future__ import annotations

import importlib

from hamburg_mamba.data.schema import (
    CATEGORICAL_FIELDS,
    NUMERIC_FEATURES,
    STAGES,
    TASKS,
    DatasetSchema,
    NumericStats,
    TaskSpec,
)

_LAZY = {
    "PathwayBatch": "hamburg_mamba.data.batch",
    "connect_hamburg_data": "hamburg_mamba.data.connector",
    "HamburgData": "hamburg_mamba.data.connector",
    "SyntheticConfig": "hamburg_mamba.data.synthetic",
    "SyntheticData": "hamburg_mamba.data.synthetic",
    "generate_synthetic": "hamburg_mamba.data.synthetic",
    "write_meds": "hamburg_mamba.data.meds_io",
    "write_synthetic": "hamburg_mamba.data.meds_io",
    "read_meds": "hamburg_mamba.data.meds_io",
    "ValidationPolicy": "hamburg_mamba.data.validate",
    "DataValidationError": "hamburg_mamba.data.validate",
    "calibration_table": "hamburg_mamba.data.calibration",
}

__all__ = [
    "CATEGORICAL_FIELDS",
    "NUMERIC_FEATURES",
    "STAGES",
    "TASKS",
    "DatasetSchema",
    "NumericStats",
    "TaskSpec",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hamburg_mamba.data' has no attribute {name!r}")
