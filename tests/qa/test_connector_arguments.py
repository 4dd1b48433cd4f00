"""Arguments of `connect_hamburg_data` that gave a silently wrong split or layout, each refused by name.

Before: fractions summing to 1.5 left one subject held out; reversed temporal cut-offs or a reversed crisis
window left the tuning or the held-out split empty; an unparseable cut-off raised pandas' DateParseError
without naming the argument; truncation="keep_first" acted as keep_last; max_len=0 dropped every event.
"""

import pytest

from hamburg_mamba.data import connect_hamburg_data


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(split="subject", split_fractions=(0.5, 0.5, 0.5)), "split_fractions: expected 3 fractions >= 0"),
        (dict(split="subject", split_fractions=(1.2, -0.1, -0.1)), "split_fractions: expected 3 fractions >= 0"),
        (dict(split="subject", split_fractions=(0.9, 0.1)), "split_fractions: expected 3 fractions >= 0"),
        (dict(split="temporal", temporal_cutoffs=("2023-08-21", "2023-08-18")), "temporal_cutoffs: .* in time order"),
        (dict(split="temporal", temporal_cutoffs=("yesterday", "2023-08-18")), "temporal_cutoffs: expected two dates"),
        (dict(split="crisis", holdout_window=("2023-08-17", "2023-08-14")), "holdout_window: .* in time order"),
        (dict(max_len=5, truncation="keep_first"), "truncation: expected 'fail' or 'keep_last'"),
        (dict(max_len=0, truncation="keep_last"), "max_len: expected None or an integer >= 1"),
        (dict(max_len=2.5, truncation="keep_last"), "max_len: expected None or an integer >= 1"),
    ],
)
def test_bad_arguments_are_refused_by_name(tiny_root, arguments, message):
    with pytest.raises(ValueError, match=message):
        connect_hamburg_data(tiny_root, **arguments)


def test_a_split_of_equal_cutoffs_has_no_tuning_period(tiny_root):
    # Equal cut-offs are a legitimate request (no tuning period), not a reversed pair.
    data = connect_hamburg_data(tiny_root, split="temporal", temporal_cutoffs=("2023-08-18", "2023-08-18"))
    assert set(data.pathways["split"]) == {"train", "held_out"}
    assert len(data.indices("tuning")) == 0
