"""A Conformer-style speech encoder on variable-length audio features.

Dynamism: the number of frames ``T`` is symbolic; a strided convolution
front-end subsamples it to ``(T - 7) // 4 + 1`` (the kind of dim expression a
shape analysis must carry: floor-division of a symbol), sinusoidal position
encodings are computed for that length at run time (``Range``, ``Sin``,
``Cos``), and the depthwise convolution module runs along the variable time
axis.
"""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F
from _common import MultiHeadAttention, randomize_norms, seed_all, sinusoidal_positions
from torch import Tensor, nn

from pliant.bench.spec import Case, InputSpec, ModelSpec

MELS, CHANNELS, D_MODEL, HEADS, HIDDEN, KERNEL, BLOCKS = 80, 64, 256, 4, 512, 15, 2

SPEC = ModelSpec(
    name="conformer",
    title="Conformer-style speech encoder",
    dynamism="audio frames T (200..1000), subsampled 4x by strided convolutions",
    inputs=(InputSpec("features", "float32", (1, "T", MELS)),),
    outputs=("encoded",),
    cases=tuple(Case(f"T={n}", {"T": n}) for n in (200, 500, 1000)),
    required_ops={"Range": 1, "Sin": 1, "Cos": 1},
    notes=f"{BLOCKS} blocks, d_model {D_MODEL}, {HEADS} heads, FFN {HIDDEN} (macaron), conv kernel {KERNEL}, {MELS} mel bins",
)


class ConvModule(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pointwise_in = nn.Linear(D_MODEL, 2 * D_MODEL)
        self.depthwise = nn.Conv1d(D_MODEL, D_MODEL, KERNEL, padding=KERNEL // 2, groups=D_MODEL)
        self.bn = nn.BatchNorm1d(D_MODEL)
        self.pointwise_out = nn.Linear(D_MODEL, D_MODEL)

    def forward(self, x: Tensor) -> Tensor:
        y = F.glu(self.pointwise_in(x), dim=-1).transpose(1, 2)
        y = F.silu(self.bn(self.depthwise(y))).transpose(1, 2)
        return self.pointwise_out(y)


class MacaronFFN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(D_MODEL)
        self.up = nn.Linear(D_MODEL, HIDDEN)
        self.down = nn.Linear(HIDDEN, D_MODEL)

    def forward(self, x: Tensor) -> Tensor:
        return 0.5 * self.down(F.silu(self.up(self.ln(x))))


class ConformerBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ffn1 = MacaronFFN()
        self.ln_attn = nn.LayerNorm(D_MODEL)
        self.attn = MultiHeadAttention(D_MODEL, HEADS)
        self.ln_conv = nn.LayerNorm(D_MODEL)
        self.conv = ConvModule()
        self.ffn2 = MacaronFFN()
        self.ln_out = nn.LayerNorm(D_MODEL)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ffn1(x)
        x = x + self.attn(self.ln_attn(x))
        x = x + self.conv(self.ln_conv(x))
        x = x + self.ffn2(x)
        return self.ln_out(x)


class Conformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.subsample = nn.Sequential(
            nn.Conv2d(1, CHANNELS, 3, 2), nn.ReLU(), nn.Conv2d(CHANNELS, CHANNELS, 3, 2), nn.ReLU()
        )
        freq = ((MELS - 1) // 2 - 1) // 2
        self.project = nn.Linear(CHANNELS * freq, D_MODEL)
        self.blocks = nn.ModuleList([ConformerBlock() for _ in range(BLOCKS)])
        self.d_model = D_MODEL

    def forward(self, features: Tensor) -> Tensor:
        x = self.subsample(features.unsqueeze(1))
        b, t = x.size(0), x.size(2)
        x = self.project(x.transpose(1, 2).reshape(b, t, x.size(1) * x.size(3)))
        x = x + sinusoidal_positions(t, self.d_model).unsqueeze(0)
        for block in self.blocks:
            x = block(x)
        return x


def build() -> nn.Module:
    seed_all(9)
    model = Conformer()
    randomize_norms(model, 9)
    return model.eval()


def make_feeds(model: nn.Module, case: Case) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(900 + case.dims["T"])
    # log-mel-like features: smooth over frequency, varying over time
    feats = rng.standard_normal((1, case.dims["T"], MELS)).astype(np.float32)
    feats = np.cumsum(feats, axis=2) / np.sqrt(MELS)
    return {"features": feats.astype(np.float32)}
