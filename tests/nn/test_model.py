"""HamburgHealthcareSafetyMamba over typed batches: shapes at every batch size, padding, gradients, compiled vs
reference scan, heads, system breakdown, config and checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from nn_batches import ALL_TASKS, VOCAB_SIZES, make_batch, select, small_config

from hamburg_mamba.data.schema import TASKS, DatasetSchema, NumericStats
from hamburg_mamba.nn import HamburgHealthcareSafetyMamba, HamburgMambaConfig, predict_system_breakdown


def build(backbone="mamba", seed=0, **kwargs) -> HamburgHealthcareSafetyMamba:
    torch.manual_seed(seed)
    return HamburgHealthcareSafetyMamba(small_config(backbone, **kwargs)).eval()


@pytest.mark.parametrize("batch_size", [1, 4, 33])
def test_output_shapes_every_batch_size(backbone, batch_size):
    model = build(backbone)
    lengths = torch.randint(1, 20, (batch_size,), generator=torch.Generator().manual_seed(batch_size))
    batch = make_batch(lengths, seed=batch_size)
    out = model(batch)
    L = batch.max_len
    assert set(out.step_logits) == set(ALL_TASKS)
    for task in ALL_TASKS:
        assert out.step_logits[task].shape == (batch_size, L)
        assert out.step_predictions[task].shape == (batch_size, L)
        assert out.pathway_predictions[task].shape == (batch_size,)
    for task, spec in ALL_TASKS.items():
        if spec["kind"] == "binary":
            p = out.step_predictions[task][batch.mask]
            assert bool(((p >= 0) & (p <= 1)).all()), task
    assert out.loss.shape == () and bool(torch.isfinite(out.loss))
    breakdown = model.predict_system_breakdown(batch)
    assert breakdown.overall.n_pathways == batch_size
    assert sum(w.n_pathways for w in breakdown.hospitals.values()) == batch_size


def scramble_padding(batch):
    """Garbage on every padded event (the contract says zeros; the model must not care)."""
    g = torch.Generator().manual_seed(123)
    pad = ~batch.mask
    for name, t in batch.categorical.items():
        t[pad] = torch.randint(0, VOCAB_SIZES[name], (int(pad.sum()),), generator=g)
    batch.numeric[pad] = torch.randn(int(pad.sum()), batch.numeric.shape[-1], generator=g) * 50
    batch.numeric_missing[pad] = False
    batch.time_since_prev_h[pad] = 1000.0
    batch.time_since_start_h[pad] = 5000.0
    batch.hour_of_day[pad] = 13.0
    return batch


@pytest.mark.parametrize("backbone_name,max_len", [("mamba", 512), ("gru", 512), ("transformer", 200), ("hybrid", 512)])
def test_padding_never_changes_real_outputs_or_final_state(backbone_name, max_len):
    """33 pathways of lengths 1..max_len, right-padded together and with garbage on the padding, give the same
    outputs at real events and the same final cache as each pathway on its own."""
    model = build(backbone_name)
    lengths = torch.linspace(1, max_len, 33).round().long()
    lengths = lengths[torch.randperm(33, generator=torch.Generator().manual_seed(0))]
    batch = scramble_padding(make_batch(lengths, seed=3))
    with torch.no_grad():
        together = model(batch, return_cache=True)
        for i in range(33):
            n = int(lengths[i])
            alone = model(select(batch, [i], slice(0, n)), return_cache=True)
            for task in ALL_TASKS:
                torch.testing.assert_close(
                    together.step_logits[task][i, :n],
                    alone.step_logits[task][0],
                    rtol=1e-4,
                    atol=1e-4,
                    msg=f"{task}, pathway {i} of length {n}",
                )
            for layer_t, layer_a in zip(together.cache, alone.cache, strict=True):
                for key, value in layer_a.items():
                    got = layer_t[key][i]
                    if key in ("k", "v"):  # attention caches: only the first n events are state
                        got, value = got[:, :n], value[:, :, :n]
                    torch.testing.assert_close(got, value[0], rtol=1e-4, atol=1e-4, msg=f"cache {key}, pathway {i}")


def test_gradients_reach_every_parameter(backbone):
    torch.manual_seed(0)
    model = HamburgHealthcareSafetyMamba(small_config(backbone, dropout=0.1)).train()
    batch = make_batch([6, 1, 11, 4, 9], seed=2)
    model(batch).loss.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert dead == []


def test_compiled_equals_reference_scan_model_float64():
    torch.manual_seed(0)
    compiled = HamburgHealthcareSafetyMamba(small_config("hybrid")).double()
    reference = HamburgHealthcareSafetyMamba(small_config("hybrid", use_reference_scan=True)).double()
    reference.load_state_dict(compiled.state_dict())
    batch = make_batch([70, 3, 41], seed=5)
    batch.numeric = batch.numeric.double()
    batch.time_since_prev_h, batch.time_since_start_h = (
        batch.time_since_prev_h.double(),
        batch.time_since_start_h.double(),
    )
    batch.hour_of_day = batch.hour_of_day.double()
    batch.check = lambda: None  # the contract is float32; float64 is a test-only precision mode
    results = []
    for model in (compiled, reference):
        out = model(batch)
        out.loss.backward()
        results.append((out, {n: p.grad for n, p in model.named_parameters()}))
    (out_c, grad_c), (out_r, grad_r) = results
    for task in ALL_TASKS:
        torch.testing.assert_close(out_c.step_logits[task], out_r.step_logits[task], rtol=1e-10, atol=1e-10)
    for name in grad_c:
        torch.testing.assert_close(grad_c[name], grad_r[name], rtol=1e-8, atol=1e-10, msg=name)


def test_crisis_probabilities_are_nested_over_horizons():
    torch.manual_seed(0)
    model = build("mamba")
    for p in model.heads["crisis"].parameters():
        torch.nn.init.normal_(p, std=2.0)
    out = model(make_batch([9, 5, 12], seed=4))
    p6, p12, p24 = (out.step_predictions[t] for t in ("closure_6h", "closure_12h", "closure_24h"))
    assert bool((p6 <= p12 + 1e-6).all()) and bool((p12 <= p24 + 1e-6).all())


def test_regression_head_uses_target_stats_and_missing_labels_are_ignored():
    model = build("gru", target_stats={"unit_workload": [7.0, 2.0]})
    batch = make_batch([5, 8], seed=6)
    out = model(batch)
    head_out = model.heads["staff"].out
    torch.nn.init.zeros_(head_out.weight)
    torch.nn.init.zeros_(head_out.bias)
    out = model(batch)
    torch.testing.assert_close(out.step_predictions["unit_workload"], torch.full((2, 8), 7.0))
    # A NaN label where the label is missing must not reach the loss.
    for name in batch.labels:
        batch.labels[name][~batch.label_mask[name]] = float("nan")
    assert bool(torch.isfinite(model(batch).loss))


def test_system_breakdown_levels_follow_thresholds_and_hospitals():
    model = build("mamba", warning_thresholds=[0.2, 0.4, 0.6])
    batch = make_batch([4, 7, 2, 9, 5, 3], seed=7)
    hospital_id = torch.tensor([2, 2, 3, 3, 3, 4])
    for pathway, h in enumerate(hospital_id.tolist()):
        batch.categorical["hospital"][pathway][batch.mask[pathway]] = h
        batch.event_hospital_id[pathway][batch.mask[pathway]] = h
    out = model(batch)
    risk = out.pathway_predictions["closure_6h"].detach()  # the shortest crisis horizon sets the level by default

    def expected(score):
        return ["green", "yellow", "orange", "red"][sum(score >= t for t in (0.2, 0.4, 0.6))]

    result = predict_system_breakdown(model, batch)
    assert result.overall.task == "closure_6h"
    assert result.overall.score == pytest.approx(float(risk.mean()), abs=1e-6)
    assert result.overall.level == expected(float(risk.mean()))
    assert list(result.hospitals) == ["hospital 2", "hospital 3", "hospital 4"]  # no names in a hand-built batch
    for name, warning in result.hospitals.items():
        members = hospital_id == result.hospitals.vocab_id[name]
        assert warning.n_pathways == int(members.sum())
        assert warning.score == pytest.approx(float(risk[members].mean()), abs=1e-6)
        assert warning.level == expected(warning.score)
        assert warning.top_pathways[0][0] == int(batch.pathway_id[members][risk[members].argmax()])
    assert all(m >= 0.2 for t, m in result.overall.drivers if ALL_TASKS[t]["kind"] == "binary")


def test_system_breakdown_single_pathway():
    model = build("transformer")
    result = model.predict_system_breakdown(make_batch([1], seed=8))
    assert result.overall.n_pathways == 1 and len(result.hospitals) == 1
    assert result.overall.level in ("green", "yellow", "orange", "red")


def test_checkpoint_round_trip(tmp_path, backbone):
    model = build(backbone, seed=3)
    batch = make_batch([6, 3, 10], seed=9)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["backbone"] == backbone
    loaded = HamburgHealthcareSafetyMamba.from_pretrained(tmp_path).eval()
    assert loaded.config == model.config
    assert list(loaded.config.tasks) == list(model.config.tasks)  # order matters: head outputs follow it
    assert list(loaded.config.vocab_sizes) == list(model.config.vocab_sizes)
    before, after = model(batch), loaded(batch)
    for task in ALL_TASKS:
        torch.testing.assert_close(before.step_logits[task], after.step_logits[task], rtol=0, atol=0)


def test_config_json_round_trip_and_from_schema():
    vocab = {name: ["<pad>", "<unk>"] + [f"{name}{i}" for i in range(size - 2)] for name, size in VOCAB_SIZES.items()}
    schema = DatasetSchema(
        categorical_vocab=vocab, code_stats={}, age_stats=NumericStats(60.0, 20.0, 10), tasks=dict(TASKS)
    )
    config = HamburgMambaConfig.from_schema(schema)
    assert config.vocab_sizes == VOCAB_SIZES and config.num_numeric == 2
    assert (config.d_model, config.n_layers, config.d_state, config.d_conv, config.expand) == (512, 12, 64, 4, 2)
    assert config.dt_rank_value == 32 and config.d_inner == 1024
    assert config.tasks["closure_12h"] == {"kind": "binary", "level": "event", "horizon_h": 12.0, "group": "crisis"}
    assert HamburgMambaConfig.from_json(config.to_json()) == config
    small = HamburgMambaConfig.from_schema(schema, preset="small", backbone="gru")
    assert (small.d_model, small.n_layers, small.backbone, small.vocab_sizes) == (64, 2, "gru", VOCAB_SIZES)
    assert small.dt_rank_value == 4
    assert small.replace(d_model=128).dt_rank_value == 8
    assert config.replace(backbone="hybrid", attn_every=4).layer_kinds() == (["mamba"] * 3 + ["attention"]) * 3


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(backbone="lstm"), "backbone"),
        (dict(warning_thresholds=[0.5, 0.4, 0.6]), "warning_thresholds"),
        (dict(warning_task="adverse_event"), "warning_task"),
        (dict(tasks={"x": {"kind": "ordinal", "level": "event", "horizon_h": 1.0, "group": "safety"}}), "kind"),
        (dict(target_stats={"closure_6h": [0.0, 1.0]}), "target_stats"),
    ],
)
def test_bad_config_names_the_field(change, message):
    fields = dict(vocab_sizes=dict(VOCAB_SIZES), num_numeric=2, tasks=dict(ALL_TASKS))
    fields.update(change)
    with pytest.raises(ValueError, match=message):
        HamburgMambaConfig.small(**fields)


def test_bad_batches_name_the_field():
    model = build("mamba")
    batch = make_batch([3, 5], seed=10)
    batch.categorical["code"][0, 0] = VOCAB_SIZES["code"]
    with pytest.raises(ValueError, match=r"categorical\['code'\]"):
        model(batch)
    batch = make_batch([3, 5], seed=10)
    del batch.categorical["unit"]
    with pytest.raises(ValueError, match="unit"):
        model(batch)
    batch = make_batch([3, 5], seed=10)
    batch.mask = batch.mask.flip(1)  # left padding
    with pytest.raises(ValueError, match="right padding"):
        model(batch)
