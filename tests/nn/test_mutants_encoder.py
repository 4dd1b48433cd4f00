"""The encoder's clip, per-code value scale with one numeric feature, and input checks: tests that kill mutants
of nn/encoder.py (docs/testing.md, "Mutation testing")."""

from dataclasses import replace

import pytest
import torch
from nn_batches import make_batch, small_config

from hamburg_mamba.nn import HamburgClinicalEncoder


def test_values_beyond_the_clip_read_as_the_clip_on_both_sides():
    torch.manual_seed(0)
    enc = HamburgClinicalEncoder(small_config()).eval()
    x = make_batch([3], seed=4)
    x.numeric_missing[:] = False
    outs = {}
    for v in (-enc.numeric_clip, -1e6, enc.numeric_clip, 1e6):
        x.numeric[:] = v
        outs[v] = enc(x)
    torch.testing.assert_close(outs[-1e6], outs[-enc.numeric_clip], rtol=0, atol=0)
    torch.testing.assert_close(outs[1e6], outs[enc.numeric_clip], rtol=0, atol=0)


def test_the_value_is_scaled_per_code_when_it_is_the_only_numeric_feature():
    torch.manual_seed(0)
    enc = HamburgClinicalEncoder(replace(small_config(), num_numeric=1)).eval()
    x = make_batch([1], seed=2)
    x.numeric, x.numeric_missing = x.numeric[..., :1].clone(), torch.zeros_like(x.numeric_missing[..., :1])
    outs = []
    for c in (3, 4):
        x.categorical["code"][:] = c
        x.numeric[:] = 0.0
        base = enc(x)
        x.numeric[:] = 2.0
        outs.append(enc(x) - base)
    # shared weight only: the same change for both codes; with w_0 + w_code (N(0, 1) per code) they differ
    assert (outs[0] - outs[1]).abs().max() > 1e-3


def test_a_missing_or_an_extra_field_and_an_index_out_of_range_are_named():
    enc = HamburgClinicalEncoder(small_config()).eval()
    x = make_batch([2], seed=0)
    missing = make_batch([2], seed=0)
    del missing.categorical["unit"]
    with pytest.raises(ValueError, match=r"missing \['unit'\], unexpected \[\]"):
        enc(missing)
    extra = make_batch([2], seed=0)
    extra.categorical["ward_colour"] = torch.zeros_like(x.categorical["unit"])
    with pytest.raises(ValueError, match=r"missing \[\], unexpected \['ward_colour'\]"):
        enc(extra)
    x.categorical["unit"][0, 0] = enc.vocab_sizes["unit"]
    with pytest.raises(ValueError, match=r"batch.categorical\['unit'\]: indices must lie in"):
        enc(x)
