"""Greedy generation with a GPT-style decoder as one ONNX Loop that stops at a stop token.

Dynamism: the prompt length ``L`` is symbolic and the number of decode steps
depends on the data: the loop runs until the generated token equals ``eos_id``
or ``max_new_tokens`` tokens were made, with the KV cache growing by one
position per iteration (a loop-carried tensor whose shape changes).
Each case's ``eos_id`` is a token the model generates at the chosen step, so
the cases stop after different, data-determined numbers of steps.
"""

from __future__ import annotations

import numpy as np
import torch
from _gpt import GPT, VOCAB, build_gpt
from torch import Tensor, nn

from pliant.bench.spec import Case, InputSpec, ModelSpec

MAX_NEW = 64

SPEC = ModelSpec(
    name="gpt_generate",
    title="GPT-style greedy generation (Loop, stop token)",
    dynamism="prompt length L; decode steps until a data-dependent stop token",
    inputs=(
        InputSpec("prompt", "int64", (1, "L")),
        InputSpec("max_new_tokens", "int64", ()),
        InputSpec("eos_id", "int64", ()),
    ),
    outputs=("tokens", "steps"),
    cases=(
        Case("L=8 stop@4", {"L": 8}, target="4 tokens"),
        Case("L=32 stop@16", {"L": 32}, target="16 tokens"),
        Case("L=64 stop@40", {"L": 64}, target="40 tokens"),
    ),
    required_ops={"Loop": 1},
    path_output="steps",
    notes=f"the decoder of gpt_decode_step; at most {MAX_NEW} new tokens",
)


class Generate(nn.Module):
    def __init__(self, gpt: GPT) -> None:
        super().__init__()
        self.gpt = gpt

    def forward(self, prompt: Tensor, max_new_tokens: Tensor, eos_id: Tensor) -> tuple[Tensor, Tensor]:
        logits, k, v = self.gpt(prompt, self.gpt.empty_cache(), self.gpt.empty_cache())
        token = logits[0, -1].argmax()
        tokens = token.view(1, 1)
        steps = torch.ones((), dtype=torch.int64)
        while bool(steps < max_new_tokens) and not bool(token == eos_id):
            logits, k, v = self.gpt(token.view(1, 1), k, v)
            token = logits[0, -1].argmax()
            tokens = torch.cat([tokens, token.view(1, 1)], dim=1)
            steps = steps + 1
        return tokens, steps


def build() -> nn.Module:
    return Generate(build_gpt()).eval()


def make_feeds(model: nn.Module, case: Case) -> dict[str, np.ndarray]:
    """A prompt whose free-running generation makes a new token at the target step; that token is the stop token."""
    steps = int(case.target.split()[0])
    length = case.dims["L"]
    for seed in range(1000):
        rng = np.random.default_rng(300 + 1000 * length + seed)
        prompt = rng.integers(0, VOCAB, size=(1, length), dtype=np.int64)
        with torch.no_grad():
            tokens, _ = model(torch.from_numpy(prompt), torch.tensor(steps), torch.tensor(-1))
        seq = tokens[0].tolist()
        if len(seq) == steps and seq[-1] not in seq[:-1]:
            return {"prompt": prompt, "max_new_tokens": np.array(MAX_NEW, np.int64), "eos_id": np.array(seq[-1], np.int64)}
    raise RuntimeError(f"gpt_generate: no prompt of length {length} generates a fresh token at step {steps}")
