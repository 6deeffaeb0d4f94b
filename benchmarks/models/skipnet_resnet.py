"""A SkipNet-style ResNet: a gate before each residual block decides, per input, whether the block runs.

Dynamism: each gated block is an ONNX ``If`` on its gate's decision (the
skipped branch is the identity), so the work done depends on the image; the
image size ``H x W`` is symbolic too. Stage-entry blocks, which change the
width and stride, always run (as in SkipNet's gated ResNets with projections).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from _common import BasicBlock, ConvBN, perturbed, randomize_norms, seed_all, structured_images
from torch import Tensor, nn

from pliant.bench.spec import Case, InputSpec, ModelSpec

WIDTHS, BLOCKS_PER_STAGE, CLASSES = (32, 64, 128), 3, 100
GATED = len(WIDTHS) * (BLOCKS_PER_STAGE - 1)

SPEC = ModelSpec(
    name="skipnet_resnet",
    title="SkipNet-style gated ResNet",
    dynamism=f"per-block gates ({GATED} If) skip residual blocks; image size H x W",
    inputs=(InputSpec("image", "float32", (1, 3, "H", "W")),),
    outputs=("logits", "blocks_run"),
    cases=(
        Case("128px 0 gated", {"H": 128, "W": 128}, target="0 blocks"),
        Case("128px 2 gated", {"H": 128, "W": 128}, target="2 blocks"),
        Case("128px 4 gated", {"H": 128, "W": 128}, target="4 blocks"),
        Case("192px 3 gated", {"H": 192, "W": 192}, target="3 blocks"),
    ),
    required_ops={"If": GATED},
    path_output="blocks_run",
    notes=f"widths {WIDTHS}, {BLOCKS_PER_STAGE} blocks per stage, {GATED} of them gated; blocks_run counts the gated blocks that ran",
)


class Always(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.block = BasicBlock(cin, cout, stride)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.block(x), torch.zeros((), dtype=torch.int64)


class Gated(nn.Module):
    """The block runs when ``sigmoid(gate(avgpool(x))) > 0.5``."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.block = BasicBlock(width, width)
        self.gate = nn.Linear(width, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        p = torch.sigmoid(self.gate(F.adaptive_avg_pool2d(x, 1).flatten(1)))
        if bool(p[0, 0] > 0.5):
            return self.block(x), torch.ones((), dtype=torch.int64)
        return x, torch.zeros((), dtype=torch.int64)


class SkipNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = ConvBN(3, WIDTHS[0], 3, 2)
        blocks: list[nn.Module] = []
        cin = WIDTHS[0]
        for s, w in enumerate(WIDTHS):
            blocks.append(Always(cin, w, 1 if s == 0 else 2))
            blocks.extend(Gated(w) for _ in range(BLOCKS_PER_STAGE - 1))
            cin = w
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(WIDTHS[-1], CLASSES)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        x = self.stem(image)
        ran = torch.zeros((), dtype=torch.int64)
        for block in self.blocks:
            x, r = block(x)
            ran = ran + r
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1)), ran


def build() -> nn.Module:
    seed_all(4)
    model = SkipNet()
    randomize_norms(model, 4)
    model.eval()
    calibrate_gates(model)
    return model


def calibrate_gates(model: SkipNet) -> None:
    """Centre and scale each gate's logit over a fixed set of images, so each gate fires on about half of them.

    Random weights give gates whose decision hardly depends on the image; a
    trained SkipNet's gates do depend on it. This stands in for the training.
    """
    images = torch.cat(structured_images(np.random.default_rng(44), 32, 96, 96))
    with torch.no_grad():
        x = model.stem(images)
        for block in model.blocks:
            if isinstance(block, Gated):
                logit = block.gate(F.adaptive_avg_pool2d(x, 1).flatten(1))[:, 0]
                block.gate.weight.div_(logit.std())
                block.gate.bias.sub_(logit.mean()).div_(logit.std())
                x = block.block(x)
            else:
                x, _ = block(x)


def make_feeds(model: nn.Module, case: Case) -> dict[str, np.ndarray]:
    """An image on which exactly the target number of gated blocks runs, with a margin from every gate's threshold."""
    want = int(case.target.split()[0])
    rng = np.random.default_rng(400 + case.dims["H"] + want)
    for image in structured_images(rng, 500, case.dims["H"], case.dims["W"]):
        with torch.no_grad():
            paths = {int(model(x)[1]) for x in (image, perturbed(image, 1), perturbed(image, 2))}
        if paths == {want}:
            return {"image": image.numpy()}
    raise RuntimeError(f"skipnet_resnet: no image of 500 runs exactly {want} gated blocks")
