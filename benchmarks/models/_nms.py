"""ONNX ``NonMaxSuppression`` as a PyTorch custom op (no torchvision), exported as that ONNX op.

``torch.ops.pliant_bench.nms(boxes, scores, max_per_class, iou_threshold, score_threshold)``
follows ONNX's semantics with ``center_point_box = 0``: ``boxes`` is
``[batch, boxes, 4]`` corners, ``scores`` is ``[batch, classes, boxes]``; it returns
``[selected, 3]`` rows ``(batch, class, box)``, per batch and class in order of
decreasing score; a box is kept when its score is above ``score_threshold`` and its
IoU with every kept box of its class is at most ``iou_threshold``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def _iou_matrix(b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of corner boxes ``[k, 4]`` in float32, with ONNX Runtime's rules (no overlap or no area: 0)."""
    y1, x1 = np.minimum(b[:, 0], b[:, 2]), np.minimum(b[:, 1], b[:, 3])
    y2, x2 = np.maximum(b[:, 0], b[:, 2]), np.maximum(b[:, 1], b[:, 3])
    ih = np.minimum(y2[:, None], y2[None, :]) - np.maximum(y1[:, None], y1[None, :])
    iw = np.minimum(x2[:, None], x2[None, :]) - np.maximum(x1[:, None], x1[None, :])
    inter = np.where((ih > 0) & (iw > 0), ih * iw, np.float32(0))
    area = (y2 - y1) * (x2 - x1)
    union = area[:, None] + area[None, :] - inter
    valid = (inter > 0) & (area[:, None] > 0) & (area[None, :] > 0) & (union > 0)
    return np.where(valid, inter / np.where(union > 0, union, np.float32(1)), np.float32(0)).astype(np.float32)


@torch.library.custom_op("pliant_bench::nms", mutates_args=())
def nms(boxes: Tensor, scores: Tensor, max_per_class: int, iou_threshold: float, score_threshold: float) -> Tensor:
    all_boxes = boxes.detach().numpy().astype(np.float32)
    all_scores = scores.detach().numpy().astype(np.float32)
    rows: list[list[int]] = []
    for b in range(all_boxes.shape[0]):
        for c in range(all_scores.shape[1]):
            s = all_scores[b, c]
            candidates = np.flatnonzero(s > np.float32(score_threshold))
            order = candidates[np.argsort(-s[candidates], kind="stable")]
            over = _iou_matrix(all_boxes[b, order]) > np.float32(iou_threshold)
            suppressed = np.zeros(len(order), dtype=bool)
            kept = 0
            for k in range(len(order)):
                if kept >= max_per_class:
                    break
                if suppressed[k]:
                    continue
                rows.append([b, c, int(order[k])])
                kept += 1
                suppressed |= over[k]
    return torch.tensor(rows, dtype=torch.int64).reshape(-1, 3)


@nms.register_fake
def _nms_fake(boxes: Tensor, scores: Tensor, max_per_class: int, iou_threshold: float, score_threshold: float) -> Tensor:
    count = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((count, 3), dtype=torch.int64)


def _nms_symbolic(g: object, boxes: object, scores: object, max_per_class: object, iou: object, score: object) -> object:
    from torch.onnx import symbolic_helper as sh

    def const(value: object, dtype: torch.dtype) -> object:
        return g.op("Constant", value_t=torch.tensor([value], dtype=dtype))  # type: ignore[attr-defined]

    return g.op(  # type: ignore[attr-defined]
        "NonMaxSuppression", boxes, scores,
        const(sh._get_const(max_per_class, "i", "max_per_class"), torch.int64),
        const(sh._get_const(iou, "f", "iou_threshold"), torch.float32),
        const(sh._get_const(score, "f", "score_threshold"), torch.float32),
    )


torch.onnx.register_custom_op_symbolic("pliant_bench::nms", _nms_symbolic, 11)
