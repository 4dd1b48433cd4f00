"""transformers' MambaForCausalLM on hamburg_mamba's ops: same logits, gradients and greedy tokens as its own
PyTorch path, and every path really calls our ops.

The model is float64; transformers' PyTorch scan and conv are independent of our kernels, and a wrong argument
order or dropped option (D, delta_bias, softplus, the gate) would show as an O(1) difference. Not all of it is
float64: MambaMixer passes A = -exp(A_log.float()), D.float() and dt_proj.bias.float() (float32 values, the same
on both sides), and its PyTorch scan also rounds B to float32 (`B.float()`), ours does not. Logits and loss
agree to 1e-9; gradients that flow through B (x_proj, conv, in_proj, ...) differ by float32 rounding,
measured up to 4e-8 of each tensor's largest entry, hence 1e-6 of it.
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from hamburg_mamba.integrations import transformers as integration  # noqa: E402

VOCAB, BATCH, PROMPT = 40, 2, 12
GRAD_TOLERANCE = 1e-6  # of the largest entry of each gradient, see the module docstring


@pytest.fixture
def model():
    config = transformers.MambaConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        state_size=4,
        num_hidden_layers=2,
        conv_kernel=4,
        expand=2,
        time_step_rank=2,
        use_cache=True,
        pad_token_id=0,
        eos_token_id=None,
    )
    torch.manual_seed(0)
    return transformers.MambaForCausalLM(config).double()


@pytest.fixture
def calls(monkeypatch):
    """How often each of our ops is called through the integration."""
    counts = {}
    for name in ("mamba_inner_fn", "causal_conv1d_fn", "causal_conv1d_update", "selective_scan_fn",
                 "selective_state_update", "mamba_block_step"):  # fmt: skip
        original = getattr(integration, name)

        def counting(*args, _name=name, _original=original, **kwargs):
            counts[_name] = counts.get(_name, 0) + 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(integration, name, counting)
    return counts


def tokens(length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(1, VOCAB, (BATCH, length), generator=torch.Generator().manual_seed(seed))


def test_logits_match_and_use_our_ops(model, calls):
    model.eval()
    ids = tokens(PROMPT)
    with torch.no_grad():
        expected = model(ids, use_cache=False).logits
        with integration.hamburg_mamba_kernels():
            assert integration.is_active()
            actual = model(ids, use_cache=False).logits
    assert not integration.is_active()
    assert calls == {"causal_conv1d_fn": 2, "selective_scan_fn": 2}  # one per layer
    torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-12)


def test_training_gradients_match_through_the_fused_mixer(model, calls):
    model.train()
    ids = tokens(PROMPT)

    def loss_and_grads():
        model.zero_grad(set_to_none=True)
        loss = model(ids, labels=ids, use_cache=False).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    expected_loss, expected = loss_and_grads()
    with integration.hamburg_mamba_kernels():
        loss, grads = loss_and_grads()
    assert calls == {"mamba_inner_fn": 2}
    torch.testing.assert_close(loss, expected_loss, rtol=1e-9, atol=1e-12)
    for name, grad in expected.items():
        scale = grad.abs().max().item()
        torch.testing.assert_close(grads[name], grad, rtol=0, atol=GRAD_TOLERANCE * scale, msg=name)


@pytest.mark.parametrize("fused_decode", [False, True])
def test_greedy_generation_with_cache_gives_the_same_tokens(model, calls, fused_decode):
    model.eval()
    ids = tokens(PROMPT, seed=1)
    new = 6
    kwargs = dict(max_new_tokens=new, do_sample=False, use_cache=True, output_scores=True, return_dict_in_generate=True)
    expected = model.generate(ids, **kwargs)
    with integration.hamburg_mamba_kernels(fused_decode=fused_decode):
        actual = model.generate(ids, **kwargs)
    assert torch.equal(actual.sequences, expected.sequences)
    # MambaMixer's own step computes dA, dB x and the state in float32 even in a float64 model
    torch.testing.assert_close(torch.stack(actual.scores), torch.stack(expected.scores), rtol=1e-6, atol=1e-6)
    layers = 2
    # the prompt through the conv and the scan, then one cached step per further token, in every layer
    step_calls = (
        {"mamba_block_step": layers * (new - 1)}
        if fused_decode
        else {"causal_conv1d_update": layers * (new - 1), "selective_state_update": layers * (new - 1)}
    )
    assert calls == {"causal_conv1d_fn": layers, "selective_scan_fn": layers, **step_calls}


def decode_step(model, ids, **step_kwargs):
    """The prompt through the model with a cache, then one cached token: (logits of that token, cache)."""
    out = model(ids[:, :-1], use_cache=True)
    step = model(ids[:, -1:], cache=out.cache, use_cache=True, **step_kwargs)
    return step.logits, step.cache


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_decode_step_matches_transformers_and_advances_the_cache(model, calls, dtype):
    model = model.to(dtype).eval()
    ids = tokens(PROMPT, seed=2)
    with torch.no_grad():
        expected_logits, expected_cache = decode_step(model, ids)
        with integration.hamburg_mamba_kernels():
            logits, cache = decode_step(model, ids)
    assert calls["mamba_block_step"] == 2
    tolerance = 1e-5 if dtype == torch.float32 else 1e-6
    torch.testing.assert_close(logits, expected_logits, rtol=tolerance, atol=tolerance)
    for layer in range(2):
        for get in ("get_conv_state", "get_recurrent_state"):
            torch.testing.assert_close(
                getattr(cache, get)(layer), getattr(expected_cache, get)(layer), rtol=tolerance, atol=tolerance
            )


def test_decode_steps_the_fused_op_does_not_cover_run_transformers_block(model, calls):
    model.eval()
    ids = tokens(PROMPT, seed=3)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        expected, _ = decode_step(model, ids, attention_mask=mask)
        with integration.hamburg_mamba_kernels():
            masked, _ = decode_step(model, ids, attention_mask=mask)  # a mask: transformers' block
            assert "mamba_block_step" not in calls and calls["selective_state_update"] == 2
            # gradients on: transformers' block, whose state update refuses to run without a backward
            with torch.enable_grad(), pytest.raises(RuntimeError, match="inference op without gradients"):
                decode_step(model, ids)
            assert "mamba_block_step" not in calls
    torch.testing.assert_close(masked, expected, rtol=1e-9, atol=1e-12)


def test_context_manager_restores_the_original_functions():
    modeling = __import__(integration.MODELING_MODULE, fromlist=["x"])
    before = {name: getattr(modeling, name) for name in integration.REPLACEMENTS}
    block_forward = modeling.MambaBlock.forward
    with integration.hamburg_mamba_kernels():
        assert all(getattr(modeling, n) is f for n, f in integration.REPLACEMENTS.items())
        assert modeling.MambaBlock.forward is not block_forward
    assert {name: getattr(modeling, name) for name in integration.REPLACEMENTS} == before
    assert modeling.MambaBlock.forward is block_forward
