"""PathwayBatch.to and the sampler's length: tests that kill mutants of data/batch.py (docs/testing.md,
"Mutation testing")."""

from dataclasses import fields

import numpy as np
import pytest
import torch

from hamburg_mamba.data.batch import PathwayBatch, PathwayBatchSampler, collate
from hamburg_mamba.data.schema import PAD_INDEX


def _batch(B=2, L=3, F=2) -> PathwayBatch:
    mask = torch.tensor([[True, True, False], [True, True, True]])
    return PathwayBatch(
        categorical={"code": torch.arange(B * L).reshape(B, L)},
        numeric=torch.linspace(-1, 1, B * L * F).reshape(B, L, F),
        numeric_missing=torch.zeros(B, L, F, dtype=torch.bool),
        time_since_prev_h=torch.full((B, L), 0.5),
        time_since_start_h=torch.arange(B * L, dtype=torch.float32).reshape(B, L),
        hour_of_day=torch.full((B, L), 13.25),
        day_of_week=torch.full((B, L), 6),
        mask=mask,
        lengths=mask.sum(1),
        labels={"death": torch.tensor([0.0, 1.0])},
        label_mask={"death": torch.tensor([True, False])},
        event_hospital_id=torch.ones(B, L, dtype=torch.int64),
        subject_id=torch.tensor([7, 9]),
        pathway_id=torch.tensor([70, 90]),
        oracle={"death": torch.tensor([0.25, 0.5])},
        event_site_id=torch.tensor([[0, 1, -1], [-1, 0, 0]]),
        site_names=("A", "B"),
    )


def test_to_moves_every_field_and_every_dict_entry_unchanged():
    b = _batch()
    b.check()
    moved = b.to("meta")
    for f in fields(b):
        old, new = getattr(b, f.name), getattr(moved, f.name)
        if isinstance(old, tuple):  # site_names: plain names, nothing to move
            assert new == old, f.name
            continue
        pairs = [(old[k], new[k]) for k in old] if isinstance(old, dict) else [(old, new)]
        assert isinstance(new, type(old)) and (not isinstance(old, dict) or new.keys() == old.keys()), f.name
        for o, n in pairs:
            assert n.device.type == "meta" and n.shape == o.shape and n.dtype == o.dtype, f.name
    same = b.to("cpu")
    for f in fields(b):
        old, new = getattr(b, f.name), getattr(same, f.name)
        if isinstance(old, tuple):
            assert new == old, f.name
            continue
        for k in old if isinstance(old, dict) else [None]:
            assert torch.equal(old[k] if k else old, new[k] if k else new), f.name


@pytest.mark.parametrize("n,batch_size", [(10, 4), (8, 4), (3, 4), (1, 1), (0, 3)])
@pytest.mark.parametrize("drop_last", [False, True])
def test_sampler_length_is_the_number_of_batches_it_yields(n, batch_size, drop_last):
    sampler = PathwayBatchSampler(np.arange(n), np.ones(n), batch_size, False, 0, False, drop_last)
    # by hand: full batches, plus one short batch unless it is dropped
    full, rest = divmod(n, batch_size)
    assert len(sampler) == full + (rest > 0 and not drop_last)
    assert len(sampler) == len(list(sampler))


def test_sampler_shuffles_by_seed_and_epoch_and_keeps_every_index_once():
    indices = np.arange(100, 140, dtype=np.int32)  # int32 in, int64 batches out
    sampler = PathwayBatchSampler(indices, np.ones(200), 8, True, 3, False, False)
    first = np.concatenate(sampler.batches())
    assert all(b.dtype == np.int64 for b in sampler.batches())
    assert sorted(first.tolist()) == indices.tolist()
    assert first.tolist() != indices.tolist()  # 40 indices left in order by a shuffle: chance 1 / 40!
    assert np.array_equal(np.concatenate(sampler.batches()), first)  # same seed and epoch, same batches
    sampler.set_epoch(1)
    assert np.concatenate(sampler.batches()).tolist() != first.tolist()


def test_bucketing_sorts_by_length_within_each_window_only():
    batch_size, window = 2, 2 * 50  # BUCKET_WINDOW_BATCHES = 50 batches a window
    n = 250
    lengths = (np.arange(n) * 37) % 11  # not sorted, with ties
    sampler = PathwayBatchSampler(np.arange(n), lengths, batch_size, False, 0, True, False)
    got = np.concatenate(sampler.batches())
    # plain loop: each window of 100 pathways, stably ordered by length; windows stay in place
    want = []
    for s in range(0, n, window):
        part = list(range(s, min(s + window, n)))
        want += sorted(part, key=lambda i: lengths[i])
    assert got.tolist() == want


def test_a_label_without_its_mask_is_named():
    b = _batch()
    b.label_mask = {}
    with pytest.raises(ValueError, match=r"labels\['death'\].*label_mask"):
        b.check()


def test_collate_equals_a_plain_loop_with_its_padding(tiny_data):
    enc, schema = tiny_data.encoded, tiny_data.schema
    idx = [int(i) for i in np.argsort(enc.lengths)[[-1, 0, len(enc.lengths) // 2]]]  # longest, shortest, middle
    b = collate(enc, idx, schema)
    L = int(max(enc.lengths[i] for i in idx))
    assert b.max_len == L and b.lengths.tolist() == [int(enc.lengths[i]) for i in idx]
    event_tasks = {t: (v, m, o) for t, (v, m, o) in enc.event_labels.items()}
    for r, p in enumerate(idx):
        start = int(enc.offsets[p])
        for pos in range(L):
            real = pos < enc.lengths[p]
            flat = start + pos
            for j, f in enumerate(schema.categorical_vocab):
                assert b.categorical[f][r, pos] == (enc.categorical[flat, j] if real else PAD_INDEX)
            if not real:
                assert bool(b.numeric_missing[r, pos].all())
            assert b.event_hospital_id[r, pos] == (enc.event_hospital_id[flat] if real else PAD_INDEX)
            for task, (val, m, orc) in event_tasks.items():
                assert b.labels[task][r, pos] == (val[flat] if real else 0), task
                assert b.label_mask[task][r, pos] == (bool(m[flat]) if real else False), task
                if orc is not None:
                    assert b.oracle[task][r, pos] == (orc[flat] if real else 0), task
    for task, (val, m, orc) in enc.pathway_labels.items():
        assert b.labels[task].tolist() == [val[p] for p in idx], task
        assert b.label_mask[task].tolist() == [bool(m[p]) for p in idx], task
        if orc is not None:
            assert b.oracle[task].tolist() == [orc[p] for p in idx], task
    assert any(orc is not None for _, _, orc in enc.pathway_labels.values())  # the tiny city has pathway oracles


def test_collate_of_no_pathways_is_an_empty_batch(tiny_data):
    b = collate(tiny_data.encoded, [], tiny_data.schema)
    assert (b.batch_size, b.max_len) == (0, 0)
    b.check()


def test_dataloader_batches_of_one_and_its_shuffle(tiny_data):
    train = tiny_data.indices("train")
    plain = [int(b.pathway_id[0]) for b in tiny_data.dataloader("train", batch_size=1)]
    assert plain == tiny_data.encoded.pathway_id[train].tolist()
    shuffled = [int(b.pathway_id[0]) for b in tiny_data.dataloader("train", batch_size=1, shuffle=True, seed=1)]
    assert sorted(shuffled) == sorted(plain) and shuffled != plain
