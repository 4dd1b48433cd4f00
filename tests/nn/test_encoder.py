"""HamburgClinicalEncoder against a hand computation of its documented formula."""

import math

import torch
from nn_batches import make_batch, small_config

from hamburg_mamba.nn import HamburgClinicalEncoder


def test_encoder_equals_its_formula_with_per_code_value_scale():
    torch.manual_seed(0)
    enc = HamburgClinicalEncoder(small_config()).eval()
    with torch.no_grad():
        enc.code_value_bias.weight.normal_()  # zero at initialisation: give it something to check
    batch = make_batch([5, 3], seed=1)
    got = enc(batch)

    parts = [enc.embeddings[f].weight[batch.categorical[f]] for f in enc.fields]
    v = batch.numeric.clamp(-enc.numeric_clip, enc.numeric_clip)
    code = batch.categorical["code"]
    B, L, F = v.shape
    numeric = torch.empty(B, L, F, enc.numeric_weight.shape[1])
    for b in range(B):
        for t in range(L):
            for f in range(F):
                w, c = enc.numeric_weight[f], enc.numeric_bias[f]
                if f == 0:  # the event's own value: scaled and shifted per code on top of the shared ones
                    w = w + enc.code_value_weight.weight[code[b, t]]
                    c = c + enc.code_value_bias.weight[code[b, t]]
                numeric[b, t, f] = enc.numeric_missing[f] if batch.numeric_missing[b, t, f] else v[b, t, f] * w + c
    hour = 2 * math.pi * batch.hour_of_day / 24
    day = 2 * math.pi * batch.day_of_week.float() / 7
    time = torch.stack(
        [
            torch.log1p(batch.time_since_prev_h),
            torch.log1p(batch.time_since_start_h),
            hour.sin(),
            hour.cos(),
            day.sin(),
            day.cos(),
        ],
        -1,
    )
    want = enc.proj(torch.cat(parts + [numeric.flatten(-2), time], -1))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)

    # the value's effect depends on the code: same value, two codes, different change of the output
    x = make_batch([1], seed=2)
    x.numeric_missing[:] = False
    outs = []
    for c in (3, 4):
        x.categorical["code"][:] = c
        x.numeric[..., 0] = 0.0
        base = enc(x)
        x.numeric[..., 0] = 2.0
        outs.append(enc(x) - base)
    assert (outs[0] - outs[1]).abs().max() > 1e-3
