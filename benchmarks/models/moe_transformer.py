"""A mixture-of-experts transformer: each token is routed to its top-2 of 8 expert FFNs.

Dynamism: the sequence length ``L`` is symbolic, and how many tokens each
expert sees depends on the data: ``TopK`` routing, ``NonZero`` to find each
expert's tokens, ``Gather`` of a data-dependent number of rows, the expert FFN on
them, and a scatter-add back (``ScatterElements``). An expert no token chose is
skipped with an ``If``, as real MoE kernels do.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from _common import FeedForward, MultiHeadAttention, TokenEmbedding, randomize_norms, seed_all
from torch import Tensor, nn

from pliant.bench.spec import Case, InputSpec, ModelSpec

VOCAB, MAX_LEN, D_MODEL, HEADS, EXPERTS, EXPERT_HIDDEN, TOP_K, LAYERS = 512, 512, 256, 4, 8, 128, 2, 2

SPEC = ModelSpec(
    name="moe_transformer",
    title="Mixture-of-experts transformer (top-2 routing)",
    dynamism="sequence length L; tokens per expert decided by the router (NonZero, Gather, scatter-add, If)",
    inputs=(InputSpec("input_ids", "int64", (1, "L")),),
    outputs=("hidden", "expert_load"),
    cases=tuple(Case(f"L={n}", {"L": n}) for n in (4, 16, 64, 256)),
    required_ops={"TopK": LAYERS, "NonZero": LAYERS * EXPERTS, "If": LAYERS * EXPERTS},
    path_output="expert_load",
    notes=f"{LAYERS} layers, d_model {D_MODEL}, {EXPERTS} experts of FFN {EXPERT_HIDDEN}, top-{TOP_K}; expert_load: tokens per expert per layer",
)


class MoE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.router = nn.Linear(D_MODEL, EXPERTS, bias=False)
        self.experts = nn.ModuleList([FeedForward(D_MODEL, EXPERT_HIDDEN) for _ in range(EXPERTS)])
        self.top_k = TOP_K

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        flat = x.reshape(-1, x.size(-1))
        probs = F.softmax(self.router(flat), dim=-1)
        top_p, top_i = probs.topk(self.top_k, dim=-1)
        top_p = top_p / top_p.sum(-1, keepdim=True)
        out = torch.zeros_like(flat)
        load: list[Tensor] = []
        for e, expert in enumerate(self.experts):
            hit = top_i == e
            rows = torch.nonzero(hit.sum(-1) > 0).flatten()
            load.append(hit.sum())
            if rows.size(0) > 0:
                weight = (top_p * hit.to(top_p.dtype)).sum(-1)[rows]
                out = out.index_add(0, rows, expert(flat[rows]) * weight.unsqueeze(1))
        return out.reshape(x.shape), torch.stack(load)


class MoELayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(D_MODEL, HEADS)
        self.ln1 = nn.LayerNorm(D_MODEL)
        self.moe = MoE()
        self.ln2 = nn.LayerNorm(D_MODEL)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.ln1(x + self.attn(x))
        y, load = self.moe(x)
        return self.ln2(x + y), load


class MoETransformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = TokenEmbedding(VOCAB, MAX_LEN, D_MODEL)
        self.layers = nn.ModuleList([MoELayer() for _ in range(LAYERS)])

    def forward(self, input_ids: Tensor) -> tuple[Tensor, Tensor]:
        x = self.embed(input_ids)
        loads: list[Tensor] = []
        for layer in self.layers:
            x, load = layer(x)
            loads.append(load)
        return x, torch.stack(loads)


def build() -> nn.Module:
    seed_all(10)
    model = MoETransformer()
    randomize_norms(model, 10)
    with torch.no_grad():
        for layer in model.layers:
            # NOTE: a sharper router, so that the load is uneven across experts, as in trained MoE models
            layer.moe.router.weight.mul_(8.0)
    return model.eval()


def make_feeds(model: nn.Module, case: Case) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1000 + case.dims["L"])
    return {"input_ids": rng.integers(0, VOCAB, size=(1, case.dims["L"]), dtype=np.int64)}
