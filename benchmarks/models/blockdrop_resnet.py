"""A BlockDrop-style ResNet: a small policy network looks at a low-resolution copy of the image and
chooses, in one shot, which residual blocks of the main network run.

Dynamism: the policy's per-block decisions each drive an ONNX ``If`` in the
main network (unlike SkipNet, all decisions are made before the main network
starts); the image size ``H x W`` is symbolic and the policy's input comes
from a ``Resize`` to a fixed size.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from _common import BasicBlock, ConvBN, perturbed, randomize_norms, seed_all, structured_images
from torch import Tensor, nn

from pliant.bench.spec import Case, InputSpec, ModelSpec

WIDTHS, BLOCKS_PER_STAGE, CLASSES, POLICY_SIZE = (16, 32, 64), 5, 10, 24
GATED = len(WIDTHS) * BLOCKS_PER_STAGE - (len(WIDTHS) - 1)

SPEC = ModelSpec(
    name="blockdrop_resnet",
    title="BlockDrop-style policy-chosen blocks",
    dynamism=f"a policy network picks which of {GATED} blocks run (If per block); image size H x W",
    inputs=(InputSpec("image", "float32", (1, 3, "H", "W")),),
    outputs=("logits", "policy"),
    cases=(
        Case("32px 4 blocks", {"H": 32, "W": 32}, target="4 blocks"),
        Case("32px 8 blocks", {"H": 32, "W": 32}, target="8 blocks"),
        Case("64px 11 blocks", {"H": 64, "W": 64}, target="11 blocks"),
    ),
    required_ops={"If": GATED, "Resize": 1},
    path_output="policy",
    notes=f"CIFAR-style ResNet-32 widths {WIDTHS}, {BLOCKS_PER_STAGE} blocks per stage; policy on a {POLICY_SIZE}px copy",
)


class Policy(nn.Module):
    def __init__(self, blocks: int) -> None:
        super().__init__()
        self.features = nn.Sequential(ConvBN(3, 16, 3, 2), ConvBN(16, 32, 3, 2))
        self.fc = nn.Linear(32, blocks)
        self.size = POLICY_SIZE

    def forward(self, image: Tensor) -> Tensor:
        small = F.interpolate(image, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.fc(F.adaptive_avg_pool2d(self.features(small), 1).flatten(1))


class Droppable(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.block = BasicBlock(width, width)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        if bool(keep):
            return self.block(x)
        return x


class BlockDrop(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.policy = Policy(GATED)
        self.stem = ConvBN(3, WIDTHS[0], 3, 1)
        self.entries = nn.ModuleList([BasicBlock(WIDTHS[s - 1], WIDTHS[s], 2) for s in range(1, len(WIDTHS))])
        self.stages = nn.ModuleList([
            nn.ModuleList([Droppable(w) for _ in range(BLOCKS_PER_STAGE if s == 0 else BLOCKS_PER_STAGE - 1)])
            for s, w in enumerate(WIDTHS)
        ])
        self.fc = nn.Linear(WIDTHS[-1], CLASSES)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        policy = (torch.sigmoid(self.policy(image))[0] > 0.5).to(torch.int64)
        x = self.stem(image)
        i = 0
        for s, stage in enumerate(self.stages):
            if s > 0:
                for e, entry in enumerate(self.entries):
                    if e == s - 1:
                        x = entry(x)
            for block in stage:
                x = block(x, policy[i] > 0)
                i += 1
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1)), policy


def build() -> nn.Module:
    seed_all(6)
    model = BlockDrop()
    randomize_norms(model, 6)
    model.eval()
    # NOTE: a trained policy's decisions depend on the image; centre and scale the random one's logits
    # over fixed images so that each block is kept for about half of them
    images = torch.cat(structured_images(np.random.default_rng(66), 64, 32, 32))
    with torch.no_grad():
        logits = model.policy(images)
        std = logits.std(0)
        model.policy.fc.weight.div_(std.unsqueeze(1))
        model.policy.fc.bias.sub_(logits.mean(0)).div_(std)
    return model


def make_feeds(model: nn.Module, case: Case) -> dict[str, np.ndarray]:
    """An image for which the policy keeps exactly the target number of blocks, with a margin."""
    want = int(case.target.split()[0])
    rng = np.random.default_rng(600 + case.dims["H"] + want)
    for image in structured_images(rng, 2000, case.dims["H"], case.dims["W"]):
        with torch.no_grad():
            policies = {tuple(model(x)[1].tolist()) for x in (image, perturbed(image, 1), perturbed(image, 2))}
        if len(policies) == 1 and sum(next(iter(policies))) == want:
            return {"image": image.numpy()}
    raise RuntimeError(f"blockdrop_resnet: no image of 2000 keeps exactly {want} blocks")
