"""A small GPT-style decoder with a KV cache, shared by ``gpt_decode_step`` and ``gpt_generate``.

The cache holds every layer's keys and values in one tensor each:
``[layers, 1, heads, past, head_dim]``; a call on ``T`` new tokens returns the
logits for them and the cache grown to ``past + T``.
"""

from __future__ import annotations

import torch
from _common import FeedForward, MultiHeadAttention, randomize_norms, seed_all
from torch import Tensor, nn

VOCAB, MAX_POS, D_MODEL, HEADS, HIDDEN, LAYERS = 512, 1024, 256, 4, 512, 2
HEAD_DIM = D_MODEL // HEADS


class DecoderBlock(nn.Module):
    """A pre-LN (GPT-2 style) decoder block attending over the cache plus the new tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(D_MODEL)
        self.attn = MultiHeadAttention(D_MODEL, HEADS)
        self.ln2 = nn.LayerNorm(D_MODEL)
        self.ffn = FeedForward(D_MODEL, HIDDEN)

    def forward(self, x: Tensor, past_k: Tensor, past_v: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = self.attn.split(self.ln1(x))
        k = torch.cat([past_k, k], dim=2)
        v = torch.cat([past_v, v], dim=2)
        x = x + self.attn.attend(q, k, v, mask)
        return x + self.ffn(self.ln2(x)), k, v


class GPT(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, D_MODEL)
        self.positions = nn.Embedding(MAX_POS, D_MODEL)
        self.blocks = nn.ModuleList([DecoderBlock() for _ in range(LAYERS)])
        self.ln_f = nn.LayerNorm(D_MODEL)
        self.head = nn.Linear(D_MODEL, VOCAB, bias=False)
        self.cache_shape = [LAYERS, 1, HEADS, 0, HEAD_DIM]

    def empty_cache(self) -> Tensor:
        return torch.zeros(self.cache_shape)

    def forward(self, ids: Tensor, past_k: Tensor, past_v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        past, t = past_k.size(3), ids.size(1)
        pos = torch.arange(past, past + t, device=ids.device)
        x = self.tokens(ids) + self.positions(pos).unsqueeze(0)
        # NOTE: a causal mask over [new tokens, past + new]: new token i sees cache positions <= past + i
        cols = torch.arange(past + t, device=ids.device).unsqueeze(0)
        rows = (torch.arange(t, device=ids.device) + past).unsqueeze(1)
        mask = (cols > rows).float() * -1e9
        ks: list[Tensor] = []
        vs: list[Tensor] = []
        for i, block in enumerate(self.blocks):
            x, k, v = block(x, past_k[i], past_v[i], mask)
            ks.append(k)
            vs.append(v)
        return self.head(self.ln_f(x)), torch.stack(ks), torch.stack(vs)


def build_gpt() -> GPT:
    seed_all(2)
    gpt = GPT()
    with torch.no_grad():
        # NOTE: larger position embeddings keep greedy decoding with random weights from cycling at once
        gpt.positions.weight.mul_(2.0)
    randomize_norms(gpt, 2)
    return gpt.eval()
