"""Building blocks shared by the suite's PyTorch models.

Every block is written so that ``torch.jit.script`` accepts it: the models are
run eagerly (plain Python) by the harness and scripted for the ONNX export, so
that Python control flow on tensors becomes real ONNX If/Loop nodes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def seed_all(seed: int) -> None:
    """Seed PyTorch's generator: every model builds the same weights for the same seed."""
    torch.manual_seed(seed)


def randomize_norms(module: nn.Module, seed: int) -> None:
    """Give norm layers non-trivial affine parameters and running statistics (eval mode)."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d)):
            with torch.no_grad():
                if m.weight is not None:
                    m.weight.copy_(1.0 + 0.1 * torch.randn(m.weight.shape, generator=g))
                if m.bias is not None:
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                    assert m.running_mean is not None and m.running_var is not None
                    m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                    m.running_var.copy_(1.0 + 0.2 * torch.rand(m.running_var.shape, generator=g))


class MultiHeadAttention(nn.Module):
    """Scaled dot-product self-attention; ``mask`` is added to the scores."""

    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = d_model // heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, t = x.size(0), x.size(1)
        qkv = self.qkv(x).view(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        scores = torch.matmul(q, k.transpose(-2, -1)) * self.scale
        if mask is not None:
            scores = scores + mask
        y = torch.matmul(F.softmax(scores, dim=-1), v)
        b, t = y.size(0), y.size(2)
        return self.out(y.transpose(1, 2).reshape(b, t, self.heads * self.head_dim))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        q, k, v = self.split(x)
        return self.attend(q, k, v, mask)


class FeedForward(nn.Module):
    def __init__(self, d_model: int, hidden: int) -> None:
        super().__init__()
        self.up = nn.Linear(d_model, hidden)
        self.down = nn.Linear(hidden, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.gelu(self.up(x)))


class EncoderLayer(nn.Module):
    """A post-LN (BERT-style) transformer encoder layer."""

    def __init__(self, d_model: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(d_model, heads)
        self.ln1 = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, hidden)
        self.ln2 = nn.LayerNorm(d_model)

    def forward(self, x: Tensor) -> Tensor:
        x = self.ln1(x + self.attn(x))
        return self.ln2(x + self.ffn(x))


class TokenEmbedding(nn.Module):
    """Token plus learned position embeddings, then LayerNorm (BERT-style)."""

    def __init__(self, vocab: int, max_len: int, d_model: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, d_model)
        self.positions = nn.Embedding(max_len, d_model)
        self.ln = nn.LayerNorm(d_model)

    def forward(self, ids: Tensor) -> Tensor:
        pos = torch.arange(ids.size(1), device=ids.device).unsqueeze(0)
        return self.ln(self.tokens(ids) + self.positions(pos))


def sinusoidal_positions(length: int, d_model: int) -> Tensor:
    """Fixed sin/cos position encodings for ``length`` positions, computed at run time."""
    pos = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    angles = pos * freq.unsqueeze(0)
    return torch.stack([torch.sin(angles), torch.cos(angles)], dim=2).reshape(length, d_model)


class GRUCell(nn.Module):
    """The GRU cell, written out: ``nn.GRUCell`` inside a scripted loop does not export to ONNX."""

    def __init__(self, inputs: int, hidden: int) -> None:
        super().__init__()
        self.x2h = nn.Linear(inputs, 3 * hidden)
        self.h2h = nn.Linear(hidden, 3 * hidden)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        xr, xz, xn = self.x2h(x).chunk(3, dim=-1)
        hr, hz, hn = self.h2h(h).chunk(3, dim=-1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1.0 - z) * n + z * h


class ConvBN(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn(self.conv(x))
        return F.relu(y) if self.act else y


class BasicBlock(nn.Module):
    """A ResNet basic block; with ``stride`` 2 or a width change it has a projection shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvBN(cin, cout, 3, stride)
        self.conv2 = ConvBN(cout, cout, 3, 1, act=False)
        self.project = stride != 1 or cin != cout
        self.shortcut = ConvBN(cin, cout, 1, stride, act=False) if self.project else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


def structured_images(rng: object, count: int, height: int, width: int) -> list[Tensor]:
    """Random images with structure (low-frequency blobs, per-channel contrast) rather than white noise.

    Pooled features of white noise are nearly the same for every image, so a
    gate would take the same decision on all of them; these images differ.
    """
    import numpy as np

    assert isinstance(rng, np.random.Generator)
    out = []
    for _ in range(count):
        coarse = rng.standard_normal((1, 3, 4, 4)).astype(np.float32) * rng.uniform(0.5, 2.0, (1, 3, 1, 1)).astype(np.float32)
        img = F.interpolate(torch.from_numpy(coarse), size=(height, width), mode="bilinear", align_corners=False)
        noise = torch.from_numpy(rng.standard_normal((1, 3, height, width)).astype(np.float32)) * float(rng.uniform(0.1, 0.5))
        out.append(img + noise + float(rng.uniform(-0.5, 0.5)))
    return out


def perturbed(x: Tensor, seed: int, scale: float = 1e-3) -> Tensor:
    """``x`` with a small relative perturbation: a case whose path changes under it is too close to a decision boundary."""
    g = torch.Generator().manual_seed(seed)
    return x + scale * x.abs().mean() * torch.randn(x.shape, generator=g)
