"""A resolution-adaptive CNN (RaNet style): classify a low-resolution copy first and
go to higher resolutions only when the classifier is not yet confident.

Dynamism: the image size ``H x W`` is symbolic and each stage works on a
``Resize``-d copy (1/4, 1/2, then full resolution) whose size is an expression
of it; whether the second and third stages run depends on the data (nested ONNX
``If``); later stages reuse the earlier stages' features.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from _common import BasicBlock, ConvBN, perturbed, randomize_norms, seed_all, structured_images
from torch import Tensor, nn

from pliant.bench.spec import Case, InputSpec, ModelSpec

CLASSES, THRESHOLD = 100, 0.5

SPEC = ModelSpec(
    name="ranet_cnn",
    title="Resolution-adaptive CNN (RaNet-style)",
    dynamism="image size H x W; 1/4 -> 1/2 -> full resolution stages run until confident (nested If)",
    inputs=(InputSpec("image", "float32", (1, 3, "H", "W")),),
    outputs=("logits", "exit_stage"),
    cases=(
        Case("128px exit@1", {"H": 128, "W": 128}, target="1"),
        Case("128px exit@3", {"H": 128, "W": 128}, target="3"),
        Case("224px exit@2", {"H": 224, "W": 224}, target="2"),
        Case("224px exit@3", {"H": 224, "W": 224}, target="3"),
    ),
    required_ops={"If": 2, "Resize": 2},
    path_output="exit_stage",
    notes=f"3 stages (widths up to 128), {CLASSES} classes, exit when max softmax > {THRESHOLD}; H, W multiples of 32",
)


class Classifier(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class RaNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        # each stage's trunk ends at 1/8 of the input image's resolution
        self.trunk1 = nn.Sequential(ConvBN(3, 32), BasicBlock(32, 64, 2))
        self.trunk2 = nn.Sequential(ConvBN(3, 32), BasicBlock(32, 64, 2), BasicBlock(64, 64, 2))
        self.trunk3 = nn.Sequential(ConvBN(3, 32, 3, 2), BasicBlock(32, 64, 2), BasicBlock(64, 64, 2))
        self.tail1 = BasicBlock(64, 128, 2)
        self.tail2 = BasicBlock(64, 128, 2)
        self.tail3 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
        self.classify1 = Classifier(128)
        self.classify2 = Classifier(128)
        self.classify3 = Classifier(128)
        self.threshold = THRESHOLD

    def confident(self, logits: Tensor) -> bool:
        return bool(F.softmax(logits, dim=-1).max() > self.threshold)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        f1 = self.trunk1(F.interpolate(image, scale_factor=0.25, mode="bilinear", align_corners=False))
        logits = self.classify1(self.tail1(f1))
        stage = torch.ones((), dtype=torch.int64)
        if not self.confident(logits):
            f2 = self.trunk2(F.interpolate(image, scale_factor=0.5, mode="bilinear", align_corners=False)) + f1
            logits = self.classify2(self.tail2(f2))
            stage = stage + 1
            if not self.confident(logits):
                f3 = self.trunk3(image) + f2
                logits = self.classify3(self.tail3(f3))
                stage = stage + 1
        return logits, stage


def build() -> nn.Module:
    seed_all(11)
    model = RaNet()
    randomize_norms(model, 11)
    model.eval()
    calibrate_exits(model)
    return model


def calibrate_exits(model: RaNet) -> None:
    """Scale the first two classifiers so each is confident on about 40% of fixed images (stands in for training)."""
    images = torch.cat(structured_images(np.random.default_rng(111), 32, 128, 128))
    with torch.no_grad():
        f1 = model.trunk1(F.interpolate(images, scale_factor=0.25, mode="bilinear", align_corners=False))
        f2 = model.trunk2(F.interpolate(images, scale_factor=0.5, mode="bilinear", align_corners=False)) + f1
        for classifier, logits in ((model.classify1, model.classify1(model.tail1(f1))), (model.classify2, model.classify2(model.tail2(f2)))):
            # centre each class's logit over the images and scale to unit spread, then sharpen
            mean, std = logits.mean(0), logits.std(0)
            classifier.fc.weight.div_(std.unsqueeze(1))
            classifier.fc.bias.sub_(mean).div_(std)
            logits = (logits - mean) / std
            lo, hi = 0.01, 1000.0
            for _ in range(60):
                mid = (lo * hi) ** 0.5
                confident = (F.softmax(logits * mid, dim=-1).max(-1).values > THRESHOLD).float().mean()
                lo, hi = (mid, hi) if confident < 0.4 else (lo, mid)
            classifier.fc.weight.mul_(lo)
            classifier.fc.bias.mul_(lo)


def make_feeds(model: nn.Module, case: Case) -> dict[str, np.ndarray]:
    """An image on which the network exits after the target stage, with a margin."""
    want = int(case.target)
    rng = np.random.default_rng(1100 + case.dims["H"] + want)
    for image in structured_images(rng, 500, case.dims["H"], case.dims["W"]):
        with torch.no_grad():
            stages = {int(model(x)[1]) for x in (image, perturbed(image, 1), perturbed(image, 2))}
        if stages == {want}:
            return {"image": image.numpy()}
    raise RuntimeError(f"ranet_cnn: no image of 500 exits after stage {want}")
