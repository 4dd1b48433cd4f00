"""Time-zone-aware event times beside naive label or status times (or the reverse).

Aware times are converted to UTC and naive ones kept, so mixing the two conventions across tables shifts one
table against the other by the zone's offset (two hours in a Hamburg summer): labels that match no event, and
status rows read two hours after the hour they describe (the future). Both must be refused, naming the column.
"""

import numpy as np
import pytest

from hamburg_mamba.data import DataValidationError, connect_hamburg_data, read_meds

ZONE = "Europe/Berlin"


@pytest.fixture(scope="module")
def tables(tiny_root):
    blob = read_meds(tiny_root)
    return blob["events"].drop(columns=["shard"]), blob["labels"], blob["system"]["hospital_hourly"]


def aware(frame, column):
    return frame.assign(**{column: frame[column].dt.tz_localize(ZONE)})


def test_aware_status_feed_beside_naive_events_is_refused(tables):
    events, labels, status = tables
    with pytest.raises(DataValidationError, match="hospital_status: times are time-zone-aware") as err:
        connect_hamburg_data(events, labels=labels, hospital_status=aware(status, "time"))
    assert err.value.column == "time"


def test_naive_labels_beside_aware_events_are_refused(tables):
    events, labels, _ = tables
    with pytest.raises(DataValidationError, match="labels of 'adverse_event': times are naive") as err:
        connect_hamburg_data(aware(events, "time"), labels={"adverse_event": labels["adverse_event"]})
    assert err.value.column == "prediction_time"


def test_one_zone_everywhere_gives_the_naive_utc_result(tables):
    # Every table in local time is the same data as every table in UTC: the labels and status features match.
    events, labels, status = tables
    utc = {"adverse_event": labels["adverse_event"]}

    def to_local(frame, column):
        return frame.assign(**{column: frame[column].dt.tz_localize("UTC").dt.tz_convert(ZONE)})

    naive = connect_hamburg_data(events, labels=utc, hospital_status=status)
    zoned = connect_hamburg_data(
        to_local(events, "time"),
        labels={"adverse_event": to_local(labels["adverse_event"], "prediction_time")},
        hospital_status=to_local(status, "time"),
    )
    assert zoned.accounting.label_rows == naive.accounting.label_rows
    np.testing.assert_array_equal(zoned.encoded.numeric, naive.encoded.numeric)
    np.testing.assert_array_equal(zoned.encoded.numeric_missing, naive.encoded.numeric_missing)
