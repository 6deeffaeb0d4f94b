"""A GRU seq2seq model with Luong attention: the encoder loops over the source, the decoder
generates greedily until it emits the stop token.

Dynamism: the encoder is an ONNX ``Loop`` whose trip count is the source
length ``S`` (a symbolic dim), collecting states in a sequence; the decoder is a
``Loop`` whose count depends on the data (stop token or ``max_len``), carrying
the hidden state and collecting the generated tokens.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from _common import GRUCell, seed_all
from torch import Tensor, nn

from pliant.bench.spec import Case, InputSpec, ModelSpec

VOCAB, EMBED, HIDDEN, BOS, MAX_LEN = 512, 128, 256, 1, 64

SPEC = ModelSpec(
    name="gru_seq2seq",
    title="GRU seq2seq, greedy decoding (Loop, stop token)",
    dynamism="source length S (encoder Loop); decoder steps until a data-dependent stop token (Loop)",
    inputs=(
        InputSpec("source", "int64", (1, "S")),
        InputSpec("max_len", "int64", ()),
        InputSpec("eos_id", "int64", ()),
    ),
    outputs=("tokens", "steps"),
    cases=(
        Case("S=8 stop@4", {"S": 8}, target="4 tokens"),
        Case("S=16 stop@16", {"S": 16}, target="16 tokens"),
        Case("S=32 stop@40", {"S": 32}, target="40 tokens"),
    ),
    required_ops={"Loop": 2},
    path_output="steps",
    notes=f"GRU hidden {HIDDEN}, embeddings {EMBED}, vocab {VOCAB}, dot-product attention; at most {MAX_LEN} steps",
)


class Seq2Seq(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.src_embed = nn.Embedding(VOCAB, EMBED)
        self.tgt_embed = nn.Embedding(VOCAB, EMBED)
        self.encoder = GRUCell(EMBED, HIDDEN)
        self.decoder = GRUCell(EMBED + HIDDEN, HIDDEN)
        self.out = nn.Linear(2 * HIDDEN, VOCAB)
        self.bos = BOS
        self.hidden = HIDDEN

    def forward(self, source: Tensor, max_len: Tensor, eos_id: Tensor) -> tuple[Tensor, Tensor]:
        emb = self.src_embed(source[0])
        h = torch.zeros(1, self.hidden)
        states: list[Tensor] = []
        for t in range(source.size(1)):
            h = self.encoder(emb[t : t + 1], h)
            states.append(h)
        memory = torch.cat(states, dim=0)
        token = torch.full((1,), self.bos, dtype=torch.int64)
        context = torch.zeros(1, self.hidden)
        tokens: list[Tensor] = []
        steps = torch.zeros((), dtype=torch.int64)
        done = False
        while bool(steps < max_len) and not done:
            h = self.decoder(torch.cat([self.tgt_embed(token), context], dim=1), h)
            weights = F.softmax(torch.matmul(h, memory.t()), dim=-1)
            context = torch.matmul(weights, memory)
            token = self.out(torch.cat([h, context], dim=1)).argmax(-1)
            tokens.append(token)
            steps = steps + 1
            done = bool(token[0] == eos_id)
        return torch.cat(tokens), steps


def build() -> nn.Module:
    seed_all(7)
    model = Seq2Seq()
    with torch.no_grad():
        # NOTE: larger recurrent weights keep greedy decoding with random weights from settling at once
        model.decoder.h2h.weight.mul_(3.0)
        model.tgt_embed.weight.mul_(2.0)
    return model.eval()


def make_feeds(model: nn.Module, case: Case) -> dict[str, np.ndarray]:
    """A source whose free-running decoding makes a new token at the target step; that token is the stop token."""
    steps = int(case.target.split()[0])
    length = case.dims["S"]
    for seed in range(1000):
        rng = np.random.default_rng(700 + 1000 * length + seed)
        source = rng.integers(0, VOCAB, size=(1, length), dtype=np.int64)
        with torch.no_grad():
            tokens, _ = model(torch.from_numpy(source), torch.tensor(steps), torch.tensor(-1))
        seq = tokens.tolist()
        if len(seq) == steps and seq[-1] not in seq[:-1]:
            return {"source": source, "max_len": np.array(MAX_LEN, np.int64), "eos_id": np.array(seq[-1], np.int64)}
    raise RuntimeError(f"gru_seq2seq: no source of length {length} decodes a fresh token at step {steps}")
