"""One GPT-style decode step with a KV cache: the cache grows from ``past`` to ``past + 1``.

Dynamism: the cache length ``P`` is symbolic; the attention mask and position
ids are computed from it at run time (Range over Shape), and the present cache
is a Concat whose size is ``P + 1``.
"""

from __future__ import annotations

import numpy as np
import torch
from _gpt import GPT, HEAD_DIM, HEADS, LAYERS, VOCAB, build_gpt
from torch import Tensor, nn

from pliant.bench.spec import Case, InputSpec, ModelSpec

SPEC = ModelSpec(
    name="gpt_decode_step",
    title="GPT-style decode step with KV cache",
    dynamism="KV-cache length P (past + 1)",
    inputs=(
        InputSpec("token", "int64", (1, 1)),
        InputSpec("past_k", "float32", (LAYERS, 1, HEADS, "P", HEAD_DIM)),
        InputSpec("past_v", "float32", (LAYERS, 1, HEADS, "P", HEAD_DIM)),
    ),
    outputs=("logits", "present_k", "present_v"),
    cases=tuple(Case(f"P={n}", {"P": n}) for n in (16, 128, 512)),
    required_ops={"Range": 2, "Concat": LAYERS * 2},
    notes=f"{LAYERS} pre-LN layers, d_model 256, {HEADS} heads, FFN 512, vocab {VOCAB}; the cache comes from a real prompt",
)


class DecodeStep(nn.Module):
    def __init__(self, gpt: GPT) -> None:
        super().__init__()
        self.gpt = gpt

    def forward(self, token: Tensor, past_k: Tensor, past_v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        logits, k, v = self.gpt(token, past_k, past_v)
        return logits[:, -1], k, v


def build() -> nn.Module:
    return DecodeStep(build_gpt()).eval()


def make_feeds(model: nn.Module, case: Case) -> dict[str, np.ndarray]:
    assert isinstance(model, DecodeStep)
    rng = np.random.default_rng(200 + case.dims["P"])
    prompt = torch.from_numpy(rng.integers(0, VOCAB, size=(1, case.dims["P"]), dtype=np.int64))
    with torch.no_grad():
        logits, k, v = model.gpt(prompt, model.gpt.empty_cache(), model.gpt.empty_cache())
    token = logits[:, -1].argmax(-1, keepdim=True)
    return {"token": token.numpy(), "past_k": k.numpy(), "past_v": v.numpy()}
