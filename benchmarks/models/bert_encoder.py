"""A BERT-style encoder on one variable-length sequence (batch 1, lengths 16..512).

Dynamism: the sequence length ``L`` is symbolic; every activation's shape is an
expression of it (position ids come from ``Range`` over ``Shape``). No control
flow: this is the suite's static-graph, dynamic-shape baseline.
"""

from __future__ import annotations

import numpy as np
import torch
from _common import EncoderLayer, TokenEmbedding, randomize_norms, seed_all
from torch import Tensor, nn

from pliant.bench.spec import Case, InputSpec, ModelSpec

VOCAB, MAX_LEN, D_MODEL, HEADS, HIDDEN, LAYERS = 1024, 512, 256, 4, 512, 4

SPEC = ModelSpec(
    name="bert_encoder",
    title="BERT-style encoder",
    dynamism="sequence length L (16..512)",
    inputs=(InputSpec("input_ids", "int64", (1, "L")),),
    outputs=("hidden",),
    cases=tuple(Case(f"L={n}", {"L": n}) for n in (16, 64, 256, 512)),
    required_ops={"Range": 1},
    notes=f"{LAYERS} layers, d_model {D_MODEL}, {HEADS} heads, FFN {HIDDEN}, vocab {VOCAB}",
)


class BertEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = TokenEmbedding(VOCAB, MAX_LEN, D_MODEL)
        self.layers = nn.ModuleList([EncoderLayer(D_MODEL, HEADS, HIDDEN) for _ in range(LAYERS)])

    def forward(self, input_ids: Tensor) -> Tensor:
        x = self.embed(input_ids)
        for layer in self.layers:
            x = layer(x)
        return x


def build() -> nn.Module:
    seed_all(1)
    model = BertEncoder()
    randomize_norms(model, 1)
    return model.eval()


def make_feeds(model: nn.Module, case: Case) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(100 + case.dims["L"])
    return {"input_ids": rng.integers(0, VOCAB, size=(1, case.dims["L"]), dtype=np.int64)}


if __name__ == "__main__":
    m = build()
    print(m(torch.from_numpy(make_feeds(m, SPEC.cases[0])["input_ids"])).shape)
