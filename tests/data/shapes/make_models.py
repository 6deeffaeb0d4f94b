"""Export the small PyTorch models the shape-analysis tests run (needs torch==2.13.0).

    python tests/data/shapes/make_models.py

* ``encoder.onnx``: a 2-layer transformer encoder, dynamic batch B and
  sequence length L; attention heads split and merged with ``view`` on
  ``x.shape`` (the Shape -> Gather -> Concat -> Reshape chains exporters emit).
* ``gpt_step.onnx``: a GPT-style decoder step over S new tokens with a KV
  cache of P past positions (dynamic B, S, P); the causal mask is sliced from
  a buffer with ``past:past+seq``; the new cache has length ``P + S``.

Weights are seeded; the files are small (< 200 KB each).
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
D, H, FF, VOCAB, MAXLEN = 32, 4, 64, 50, 128


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(D, 3 * D)
        self.out = nn.Linear(D, D)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[0], x.shape[1]
        return x.view(b, t, H, D // H).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = self.split(q), self.split(k), self.split(v)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // H), dim=-1)
        y = (att @ v).transpose(1, 2).contiguous()
        return self.out(y.view(x.shape[0], x.shape[1], D))


class EncoderLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = Attention()
        self.ln1 = nn.LayerNorm(D)
        self.ln2 = nn.LayerNorm(D)
        self.ff = nn.Sequential(nn.Linear(D, FF), nn.GELU(), nn.Linear(FF, D))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln1(x + self.attn(x))
        return self.ln2(x + self.ff(x))


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tok = nn.Embedding(VOCAB, D)
        self.pos = nn.Embedding(MAXLEN, D)
        self.layers = nn.ModuleList([EncoderLayer() for _ in range(2)])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1]).unsqueeze(0)
        x = self.tok(ids) + self.pos(pos)
        for layer in self.layers:
            x = layer(x)
        return x


class GPTStep(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tok = nn.Embedding(VOCAB, D)
        self.pos = nn.Embedding(MAXLEN, D)
        self.qkv = nn.Linear(D, 3 * D)
        self.out = nn.Linear(D, D)
        self.head = nn.Linear(D, VOCAB)
        self.register_buffer("mask", torch.tril(torch.ones(MAXLEN, MAXLEN)).view(1, 1, MAXLEN, MAXLEN))

    def forward(self, ids: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, s = ids.shape[0], ids.shape[1]
        p = past_k.shape[2]
        pos = torch.arange(p, p + s).unsqueeze(0)
        x = self.tok(ids) + self.pos(pos)
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q = q.view(b, s, H, D // H).transpose(1, 2)
        k = torch.cat([past_k, k.view(b, s, H, D // H).transpose(1, 2)], dim=2)
        v = torch.cat([past_v, v.view(b, s, H, D // H).transpose(1, 2)], dim=2)
        att = q @ k.transpose(-1, -2) / math.sqrt(D // H)
        att = att.masked_fill(self.mask[:, :, p:p + s, :p + s] == 0, float("-inf"))
        y = (torch.softmax(att, dim=-1) @ v).transpose(1, 2).contiguous().view(b, s, D)
        return self.head(self.out(y)), k, v


def main() -> None:
    torch.manual_seed(0)
    enc = Encoder().eval()
    ids = torch.randint(0, VOCAB, (2, 7))
    torch.onnx.export(enc, (ids,), os.path.join(HERE, "encoder.onnx"), input_names=["ids"], output_names=["hidden"],
                      dynamic_axes={"ids": {0: "B", 1: "L"}, "hidden": {0: "B", 1: "L"}}, opset_version=17, dynamo=False)
    gpt = GPTStep().eval()
    ids = torch.randint(0, VOCAB, (2, 3))
    pk = torch.randn(2, H, 5, D // H)
    pv = torch.randn(2, H, 5, D // H)
    torch.onnx.export(gpt, (ids, pk, pv), os.path.join(HERE, "gpt_step.onnx"),
                      input_names=["ids", "past_k", "past_v"], output_names=["logits", "present_k", "present_v"],
                      dynamic_axes={"ids": {0: "B", 1: "S"}, "past_k": {0: "B", 2: "P"}, "past_v": {0: "B", 2: "P"},
                                    "logits": {0: "B", 1: "S"}, "present_k": {0: "B", 2: "T"}, "present_v": {0: "B", 2: "T"}},
                      opset_version=17, dynamo=False)


if __name__ == "__main__":
    main()
