"""A YOLO-style single-stage detector (anchor-free, two scales) with NonMaxSuppression, on variable image sizes.

Dynamism: the image size ``H x W`` is symbolic, so the number of candidate
boxes (and the grids built with ``Range``) depend on it; ONNX
``NonMaxSuppression`` then selects a data-dependent number of detections, which
``Gather`` pulls out: every output's first dim is known only after execution.
"""

from __future__ import annotations

import _nms  # also registers torch.ops.pliant_bench.nms
import numpy as np
import torch
from _common import ConvBN, randomize_norms, seed_all, structured_images
from torch import Tensor, nn

from pliant.bench.spec import Case, InputSpec, ModelSpec

CLASSES, MAX_PER_CLASS, IOU, SCORE = 20, 50, 0.5, 0.3

SPEC = ModelSpec(
    name="yolo_nms",
    title="YOLO-style detector with NMS",
    dynamism="image size H x W; NonMaxSuppression keeps a data-dependent number of boxes",
    inputs=(InputSpec("image", "float32", (1, 3, "H", "W")),),
    outputs=("boxes", "scores", "classes", "num_detections"),
    cases=(
        Case("160x160", {"H": 160, "W": 160}),
        Case("320x320", {"H": 320, "W": 320}),
        Case("480x640", {"H": 480, "W": 640}),
    ),
    required_ops={"NonMaxSuppression": 1, "Range": 2},
    path_output="num_detections",
    notes=f"strides 16 and 32, {CLASSES} classes, NMS iou {IOU}, score {SCORE}, at most {MAX_PER_CLASS} per class",
)


class Head(nn.Module):
    def __init__(self, channels: int, stride: int, kernel: int) -> None:
        super().__init__()
        self.conv = ConvBN(channels, channels, kernel)
        self.pred = nn.Conv2d(channels, 5 + CLASSES, 1)
        self.stride = float(stride)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        p = self.pred(self.conv(x))[0]
        h, w = p.size(1), p.size(2)
        p = p.reshape(p.size(0), h * w).t()
        ys = (torch.arange(h).to(torch.float32).unsqueeze(1) + 0.5).expand(h, w).reshape(h * w)
        xs = (torch.arange(w).to(torch.float32).unsqueeze(0) + 0.5).expand(h, w).reshape(h * w)
        ltrb = torch.exp(p[:, 0:4].clamp(-4.0, 4.0)) * self.stride
        cy, cx = ys * self.stride, xs * self.stride
        boxes = torch.stack([cy - ltrb[:, 1], cx - ltrb[:, 0], cy + ltrb[:, 3], cx + ltrb[:, 2]], dim=1)
        scores = torch.sigmoid(p[:, 4:5]) * torch.sigmoid(p[:, 5:])
        return boxes, scores


class Detector(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stage16 = nn.Sequential(
            ConvBN(3, 16, 3, 2), ConvBN(16, 32, 3, 2), ConvBN(32, 64, 3, 2), ConvBN(64, 64), ConvBN(64, 128, 3, 2), ConvBN(128, 128)
        )
        self.stage32 = nn.Sequential(ConvBN(128, 256, 3, 2), ConvBN(256, 256, 1))
        self.head16 = Head(128, 16, 3)
        self.head32 = Head(256, 32, 1)
        self.max_per_class = MAX_PER_CLASS
        self.iou = IOU
        self.score = SCORE

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        f16 = self.stage16(image)
        b16, s16 = self.head16(f16)
        b32, s32 = self.head32(self.stage32(f16))
        boxes = torch.cat([b16, b32], dim=0)
        scores = torch.cat([s16, s32], dim=0)
        selected = torch.ops.pliant_bench.nms(boxes.unsqueeze(0), scores.t().unsqueeze(0), self.max_per_class, self.iou, self.score)
        cls, idx = selected[:, 1], selected[:, 2]
        return boxes[idx], scores[idx, cls], cls, torch.full((), selected.size(0), dtype=torch.int64)


def build() -> nn.Module:
    seed_all(8)
    model = Detector()
    randomize_norms(model, 8)
    model.eval()
    calibrate_heads(model)
    return model


def calibrate_heads(model: Detector) -> None:
    """Normalise each prediction channel over fixed images, then set box sizes around the stride,
    objectness mostly low and class scores spread, as a trained detector's would be."""
    images = torch.cat(structured_images(np.random.default_rng(88), 8, 160, 160))
    target_mean = torch.tensor([0.0] * 4 + [-2.5] + [0.0] * CLASSES)
    target_std = torch.tensor([0.5] * 4 + [2.0] + [2.0] * CLASSES)
    with torch.no_grad():
        f16 = model.stage16(images)
        for head, feats in ((model.head16, f16), (model.head32, model.stage32(f16))):
            p = head.pred(head.conv(feats)).transpose(0, 1).reshape(5 + CLASSES, -1)
            mean, std = p.mean(1), p.std(1)
            head.pred.weight.mul_((target_std / std).view(-1, 1, 1, 1))
            head.pred.bias.copy_((head.pred.bias - mean) * target_std / std + target_mean)


def nms_is_robust(boxes: np.ndarray, scores: np.ndarray, gap: float = 2e-5) -> bool:
    """No NMS decision is within ``gap`` of flipping: no score near the threshold, no two candidates of a class
    with nearly equal scores, no overlapping candidate pair with an IoU near the threshold.

    Float rounding differs between thread counts and runtimes (~1e-6 here); a case must not depend on it.
    """
    if np.any(np.abs(scores - SCORE) < gap):
        return False
    for c in range(scores.shape[1]):
        candidates = np.flatnonzero(scores[:, c] > SCORE)
        ordered = np.sort(scores[candidates, c])
        if len(ordered) > 1 and np.min(np.diff(ordered)) < gap:
            return False
        iou = _nms._iou_matrix(boxes[candidates].astype(np.float32))
        if np.any(np.abs(iou[np.triu_indices(len(candidates), 1)] - IOU) < gap):
            return False
    return True


def make_feeds(model: nn.Module, case: Case) -> dict[str, np.ndarray]:
    """An image whose detections do not hinge on rounding (see :func:`nms_is_robust`)."""
    assert isinstance(model, Detector)
    rng = np.random.default_rng(800 + case.dims["H"] + case.dims["W"])
    for image in structured_images(rng, 200, case.dims["H"], case.dims["W"]):
        with torch.no_grad():
            f16 = model.stage16(image)
            b16, s16 = model.head16(f16)
            b32, s32 = model.head32(model.stage32(f16))
        if nms_is_robust(torch.cat([b16, b32]).numpy(), torch.cat([s16, s32]).numpy()):
            return {"image": image.numpy()}
    raise RuntimeError(f"yolo_nms: no image of 200 at {case.name} has detections clear of rounding")
