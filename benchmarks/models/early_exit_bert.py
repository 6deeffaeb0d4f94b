"""A DeeBERT / Shallow-Deep style early-exit encoder: a classifier after every layer, and the
network stops at the first layer whose classifier is confident enough.

Dynamism: the sequence length ``L`` is symbolic, and the number of layers run
depends on the data: each layer and its classifier sit in an ONNX ``If`` that
runs only while no earlier classifier's top softmax probability passed the
threshold.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from _common import EncoderLayer, TokenEmbedding, perturbed, randomize_norms, seed_all
from torch import Tensor, nn

from pliant.bench.spec import Case, InputSpec, ModelSpec

VOCAB, MAX_LEN, D_MODEL, HEADS, HIDDEN, LAYERS, CLASSES = 512, 256, 256, 4, 512, 4, 8
THRESHOLD = 0.6

SPEC = ModelSpec(
    name="early_exit_bert",
    title="DeeBERT-style early-exit encoder",
    dynamism="sequence length L; layers run until a classifier is confident (If per layer)",
    inputs=(InputSpec("input_ids", "int64", (1, "L")),),
    outputs=("logits", "exit_layer"),
    cases=(
        Case("L=32 exit@1", {"L": 32}, target="1"),
        Case("L=32 exit@4", {"L": 32}, target="4"),
        Case("L=128 exit@2", {"L": 128}, target="2"),
        Case("L=128 exit@3", {"L": 128}, target="3"),
    ),
    required_ops={"If": LAYERS - 1},
    path_output="exit_layer",
    notes=f"{LAYERS} layers like bert_encoder (vocab {VOCAB}), a {CLASSES}-way classifier after each, exit when max softmax > {THRESHOLD}",
)


class ExitLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = EncoderLayer(D_MODEL, HEADS, HIDDEN)
        self.classify = nn.Linear(D_MODEL, CLASSES)

    def head(self, x: Tensor) -> Tensor:
        return self.classify(x[:, 0])


class EarlyExitBert(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = TokenEmbedding(VOCAB, MAX_LEN, D_MODEL)
        self.layers = nn.ModuleList([ExitLayer() for _ in range(LAYERS)])
        self.threshold = THRESHOLD
        self.classes = CLASSES

    def forward(self, input_ids: Tensor) -> tuple[Tensor, Tensor]:
        x = self.embed(input_ids)
        logits = torch.zeros(1, self.classes)
        exit_layer = torch.zeros((), dtype=torch.int64)
        done = False
        for i, layer in enumerate(self.layers):
            if not done:
                x = layer.layer(x)
                logits = layer.head(x)
                exit_layer = torch.full((), i + 1, dtype=torch.int64)
                done = bool(F.softmax(logits, dim=-1).max() > self.threshold)
        return logits, exit_layer


def build() -> nn.Module:
    seed_all(5)
    model = EarlyExitBert()
    randomize_norms(model, 5)
    model.eval()
    calibrate_exits(model)
    return model


def calibrate_exits(model: EarlyExitBert) -> None:
    """Scale each classifier so it is confident on about a third of a fixed set of inputs.

    A trained early-exit model's confidence depends on the input; random
    classifiers are never confident. This stands in for the training.
    """
    ids = torch.from_numpy(np.random.default_rng(55).integers(0, VOCAB, size=(48, 64), dtype=np.int64))
    with torch.no_grad():
        x = model.embed(ids)
        for layer in model.layers:
            x = layer.layer(x)
            logits = layer.head(x)
            lo, hi = 0.01, 100.0
            for _ in range(60):
                mid = (lo * hi) ** 0.5
                confident = (F.softmax(logits * mid, dim=-1).max(-1).values > THRESHOLD).float().mean()
                lo, hi = (mid, hi) if confident < 1 / 3 else (lo, mid)
            layer.classify.weight.mul_(lo)
            layer.classify.bias.mul_(lo)


def make_feeds(model: nn.Module, case: Case) -> dict[str, np.ndarray]:
    """Token ids on which the model exits after the target layer, with a margin."""
    want = int(case.target)
    length = case.dims["L"]
    rng = np.random.default_rng(500 + length + want)
    assert isinstance(model, EarlyExitBert)
    for _ in range(2000):
        ids = torch.from_numpy(rng.integers(0, VOCAB, size=(1, length), dtype=np.int64))
        with torch.no_grad():
            emb = model.embed(ids)
            exits = set()
            for e in (emb, perturbed(emb, 1), perturbed(emb, 2)):
                x, layer_no = e, 0
                for i, layer in enumerate(model.layers):
                    x = layer.layer(x)
                    layer_no = i + 1
                    if bool(F.softmax(layer.head(x), dim=-1).max() > THRESHOLD):
                        break
                exits.add(layer_no)
            if exits == {want} and int(model(ids)[1]) == want:
                return {"input_ids": ids.numpy()}
    raise RuntimeError(f"early_exit_bert: no input of length {length} exits exactly after layer {want}")
