"""Sequence backbones with one interface: Mamba, GRU, causal Transformer, and the Mamba/attention hybrid.

Glossary: B batch (pathways), L events, D d_model, H attention heads, Dh = D / H, T cache capacity (events).

Every residual layer has `forward(x, dt_scale, lengths, return_state)` over a whole (right-padded) batch,
`step(x, cache, dt_scale, weights_dtype)` for one new event per pathway (weights_dtype and the weight copies
the step reads: see `hamburg_mamba.nn.mamba`), and `empty_cache(batch)`. A cache is a dict of batch-first
tensors, so a streaming monitor can gather and scatter the rows of live pathways.
Right padding plus causality means padded events never change a real event's output; each layer reads its
cache at the pathway's last real event (`lengths`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hamburg_mamba.nn.config import HamburgMambaConfig
from hamburg_mamba.nn.mamba import HamburgMambaBlock, StepProjection, cached_step_weights

# The attention cache starts with room for this many events and doubles when a pathway outgrows it.
INITIAL_KV_CAPACITY = 64


class Backbone(nn.Module):
    """The residual layers the config names (`HamburgMambaConfig.layer_kinds`) and a final RMSNorm."""

    def __init__(self, config: HamburgMambaConfig):
        super().__init__()
        build = {"mamba": HamburgMambaBlock, "attention": AttentionBlock, "gru": GRUBlock}
        self.layers = nn.ModuleList(build[kind](config) for kind in config.layer_kinds())
        self.norm = nn.RMSNorm(config.d_model, eps=config.norm_eps)

    def forward(self, x: Tensor, dt_scale: Tensor, lengths: Tensor, return_state: bool = False):
        """x: (B, L, D), dt_scale: (B, L), lengths: (B,) -> (B, L, D) [, list of per-layer caches]."""
        caches = []
        for layer in self.layers:
            if return_state:
                x, cache = layer(x, dt_scale=dt_scale, lengths=lengths, return_state=True)
                caches.append(cache)
            else:
                x = layer(x, dt_scale=dt_scale, lengths=lengths)
        x = self.norm(x)
        return (x, caches) if return_state else x

    @torch.no_grad()
    def step(
        self, x: Tensor, caches: list[dict[str, Tensor]], dt_scale: Tensor, weights_dtype: torch.dtype | None = None
    ) -> Tensor:
        """x: (B, D) one event per pathway -> (B, D); advances every layer's cache in place."""
        for layer, cache in zip(self.layers, caches, strict=True):
            x = layer.step(x, cache, dt_scale=dt_scale, weights_dtype=weights_dtype)
        return self.norm(x)

    def empty_cache(self, batch: int, device=None, dtype=None) -> list[dict[str, Tensor]]:
        return [layer.empty_cache(batch, device=device, dtype=dtype) for layer in self.layers]


class AttentionBlock(nn.Module):
    """Pre-norm causal self-attention and MLP, each with a residual (GPT-2 layout).

    No position embedding: a causal mask already tells a token how many came before it (Kazemnejad et al.
    2023, "The impact of positional encoding on length generalization in transformers"), and the encoder
    supplies the clinical clock (time since pathway start), which matters more than the event index.
    """

    def __init__(self, config: HamburgMambaConfig):
        super().__init__()
        D = config.d_model
        self.n_heads = config.n_heads
        self.dropout = config.dropout
        self.norm1 = nn.RMSNorm(D, eps=config.norm_eps)
        self.qkv = nn.Linear(D, 3 * D, bias=False)
        self.proj = nn.Linear(D, D, bias=False)
        self.norm2 = nn.RMSNorm(D, eps=config.norm_eps)
        self.mlp_in = nn.Linear(D, config.mlp_ratio * D)
        self.mlp_out = nn.Linear(config.mlp_ratio * D, D)
        self.resid_dropout = nn.Dropout(config.dropout)

    def mlp(self, x: Tensor) -> Tensor:
        return self.resid_dropout(self.mlp_out(F.gelu(self.mlp_in(x))))

    def _heads(self, t: Tensor) -> Tensor:
        """(..., D) -> (..., H, Dh)."""
        return t.unflatten(-1, (self.n_heads, -1))

    def forward(
        self, x: Tensor, dt_scale: Tensor | None = None, lengths: Tensor | None = None, return_state: bool = False
    ):
        batch, seqlen, _ = x.shape
        q, k, v = (self._heads(t).transpose(1, 2) for t in self.qkv(self.norm1(x)).chunk(3, dim=-1))  # (B, H, L, Dh)
        # Right padding: a causal query at a real event only sees real events, so no padding mask is needed.
        a = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, L, Dh)
        x = x + self.resid_dropout(self.proj(a.transpose(1, 2).flatten(2)))  # (B, L, D)
        x = x + self.mlp(self.norm2(x))
        if not return_state:
            return x
        if lengths is None:
            lengths = torch.full((batch,), seqlen, dtype=torch.int64, device=x.device)
        return x, {"k": k.contiguous(), "v": v.contiguous(), "len": lengths.clone()}

    def empty_cache(self, batch: int, device=None, dtype=None) -> dict[str, Tensor]:
        dtype = dtype or self.qkv.weight.dtype
        D = self.qkv.in_features
        shape = (batch, self.n_heads, INITIAL_KV_CAPACITY, D // self.n_heads)
        return {
            "k": torch.zeros(shape, device=device, dtype=dtype),
            "v": torch.zeros(shape, device=device, dtype=dtype),
            "len": torch.zeros(batch, dtype=torch.int64, device=device),
        }

    def _build_step_weights(self, weights_dtype: torch.dtype | None) -> dict[str, StepProjection]:
        return {
            name: StepProjection(getattr(self, name).weight, getattr(self, name).bias, weights_dtype)
            for name in ("qkv", "proj", "mlp_in", "mlp_out")
        }

    @torch.no_grad()
    def step(
        self,
        x: Tensor,
        cache: dict[str, Tensor],
        dt_scale: Tensor | None = None,
        weights_dtype: torch.dtype | None = None,
    ) -> Tensor:
        """x: (B, D) -> (B, D). Appends this event's key and value: O(events so far), not O(1)."""
        w = cached_step_weights(self, weights_dtype, self._build_step_weights)
        batch = x.shape[0]
        q, k, v = (self._heads(t) for t in w["qkv"](self.norm1(x)).chunk(3, dim=-1))  # (B, H, Dh) each
        pos = cache["len"]  # (B,) where this event goes
        capacity = cache["k"].shape[2]
        if int(pos.max()) >= capacity:
            grow = (0, 0, 0, capacity)  # double the event dimension
            cache["k"], cache["v"] = F.pad(cache["k"], grow), F.pad(cache["v"], grow)
        rows = torch.arange(batch, device=x.device)
        cache["k"][rows, :, pos] = k
        cache["v"][rows, :, pos] = v
        cache["len"] = pos + 1
        T = cache["k"].shape[2]
        visible = torch.arange(T, device=x.device)[None, :] <= pos[:, None]  # (B, T)
        a = F.scaled_dot_product_attention(
            q[:, :, None], cache["k"], cache["v"], attn_mask=visible[:, None, None, :]
        )  # (B, H, 1, Dh)
        x = x + w["proj"](a[:, :, 0].flatten(1))
        return x + w["mlp_out"](F.gelu(w["mlp_in"](self.norm2(x))))


class GRUBlock(nn.Module):
    """Pre-norm residual GRU layer: x + GRU(RMSNorm(x)). Its cache is the hidden state, O(1) per event."""

    def __init__(self, config: HamburgMambaConfig):
        super().__init__()
        self.norm = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self.gru = nn.GRU(config.d_model, config.d_model, batch_first=True)

    def forward(
        self, x: Tensor, dt_scale: Tensor | None = None, lengths: Tensor | None = None, return_state: bool = False
    ):
        h, _ = self.gru(self.norm(x))  # (B, L, D); h[:, t] is the hidden state after event t
        if not return_state:
            return x + h
        last = (lengths - 1) if lengths is not None else torch.full_like(h[:, 0, 0], h.shape[1] - 1, dtype=torch.int64)
        h_last = h[torch.arange(h.shape[0], device=h.device), last]  # (B, D)
        return x + h, {"h": h_last}

    def empty_cache(self, batch: int, device=None, dtype=None) -> dict[str, Tensor]:
        dtype = dtype or self.gru.weight_hh_l0.dtype
        return {"h": torch.zeros(batch, self.gru.hidden_size, device=device, dtype=dtype)}

    def _build_step_weights(self, weights_dtype: torch.dtype | None) -> tuple[StepProjection, StepProjection]:
        g = self.gru
        return (
            StepProjection(g.weight_ih_l0, g.bias_ih_l0, weights_dtype),
            StepProjection(g.weight_hh_l0, g.bias_hh_l0, weights_dtype),
        )

    @torch.no_grad()
    def step(
        self,
        x: Tensor,
        cache: dict[str, Tensor],
        dt_scale: Tensor | None = None,
        weights_dtype: torch.dtype | None = None,
    ) -> Tensor:
        """x: (B, D) -> (B, D); one GRU cell update of cache["h"] (torch's GRU equations, gates r, z, n)."""
        w_ih, w_hh = cached_step_weights(self, weights_dtype, self._build_step_weights)
        h = cache["h"]  # (B, D)
        i_r, i_z, i_n = w_ih(self.norm(x)).chunk(3, dim=-1)  # (B, D) each
        h_r, h_z, h_n = w_hh(h).chunk(3, dim=-1)
        r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        h = cache["h"] = n + z * (h - n)  # (1 - z) * n + z * h
        return x + h
