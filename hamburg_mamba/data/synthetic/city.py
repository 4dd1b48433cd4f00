"""Stage 1: the city (hospital sizes, distances) and its hourly drivers of demand (profiles, heat, influenza)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hamburg_mamba.data.cities import HOSPITALS
from hamburg_mamba.data.synthetic.config import SyntheticConfig
from hamburg_mamba.data.synthetic.constants import ED_BED_MARGIN, ED_MEAN_STAY_H, SIM_DTYPE
from hamburg_mamba.data.synthetic.records import City, Drivers

# Relative ED arrivals Monday..Sunday (assumption: busiest on Mondays, quietest on Saturdays), scaled to mean 1.
WEEKDAY_PROFILE = (1.12, 1.02, 0.99, 0.98, 1.01, 0.93, 0.95)


def build_city(cfg: SyntheticConfig) -> City:
    volume = np.array([HOSPITALS[h].ed_visits_per_year for h in cfg.hospitals], dtype=SIM_DTYPE) * cfg.scale
    xy = np.array([HOSPITALS[h].xy_km for h in cfg.hospitals])  # (N, 2)
    distance = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1))  # (N, N) km
    per_hour = volume / (365.0 * 24.0)
    # ED beds: mean census (arrivals/h x mean stay) with a margin; crowding happens at the midday peak.
    ed_beds = np.maximum(4, np.round(per_hour * ED_MEAN_STAY_H * ED_BED_MARGIN)).astype(np.int64)
    return City(
        n_hospitals=len(cfg.hospitals),
        ed_visits_per_year=volume,
        arrivals_per_hour=per_hour,
        distance_km=distance,
        ed_beds=ed_beds,
    )


def city_drivers(cfg: SyntheticConfig) -> Drivers:
    t = np.arange(cfg.hours, dtype=SIM_DTYPE) + 0.5  # (H,) mid-hour
    stamp = pd.Timestamp(cfg.start)
    hour_of_day = (stamp.hour + t) % 24.0
    day = np.floor((stamp.hour + t) / 24.0).astype(np.int64)
    day_of_week = (stamp.day_of_week + day) % 7
    day_of_year = (stamp.day_of_year + day) % 365
    heat_start = cfg.hours_since_start(cfg.heat_wave_start)
    heat = (t >= heat_start) & (t < heat_start + 24 * cfg.heat_wave_days)
    # Temperature (daily max proxy, degC): seasonal cosine, heat wave +11 degC, smooth daily wave.
    temperature = (
        14.0
        + 9.0 * np.cos(2 * np.pi * (day_of_year - 200) / 365.0)
        + 11.0 * heat
        + 4.0 * np.sin(2 * np.pi * (hour_of_day - 9) / 24)
    )
    flu_peak = cfg.hours_since_start(cfg.flu_peak)
    flu_share = cfg.flu_peak_share * np.exp(-0.5 * ((t - flu_peak) / (24.0 * cfg.flu_width_days)) ** 2)
    # Diurnal ED arrival profile (low 04:00, peak late morning) and weekday profile; both mean 1.
    diurnal = (
        1.0
        + 0.55 * np.sin(2 * np.pi * (hour_of_day - 7.0) / 24.0)
        + 0.15 * np.sin(4 * np.pi * (hour_of_day - 9.0) / 24.0)
    )
    weekly = np.array(WEEKDAY_PROFILE)[day_of_week]
    weekly = weekly / np.array(WEEKDAY_PROFILE).mean()
    seasonal = 1.0 + cfg.seasonal_amplitude * np.cos(2 * np.pi * (day_of_year - 15) / 365.0)
    frame = pd.DataFrame(
        {
            "time": stamp + pd.to_timedelta(np.arange(cfg.hours), unit="h"),
            "temperature_c": temperature.astype(np.float32),
            "heat_wave": heat,
            "flu_share_expected": flu_share.astype(np.float32),
        }
    )
    return Drivers(
        hour_of_day=hour_of_day,
        day_of_week=day_of_week,
        day=day,
        heat_wave=heat,
        flu_share=flu_share,
        diurnal=diurnal,
        weekly=weekly,
        seasonal=seasonal,
        frame=frame,
    )
