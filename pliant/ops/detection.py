"""Detection: NonMaxSuppression and RoiAlign."""

from __future__ import annotations

from typing import Any

import numpy as np

from pliant.errors import OpRuntimeError
from pliant.ir.dims import Dim
from pliant.ir.dtypes import DType
from pliant.ir.types import TensorType, Type
from pliant.ops.infer import tensor_input
from pliant.ops.registry import Dynamism, InferContext, KernelContext, register

DETECTION = "detection"


# -- NonMaxSuppression ----------------------------------------------------------------


def _nms_infer(ctx: InferContext) -> list[Type]:
    return [TensorType(DType.INT64, (None, 3))]


def _corners(boxes: np.ndarray, center: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(y1, x1, y2, x2) with y1 <= y2 and x1 <= x2, from either box encoding."""
    if center:
        xc, yc, w, h = boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]
        return yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2
    a, b, c, d = boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]
    return np.minimum(a, c), np.minimum(b, d), np.maximum(a, c), np.maximum(b, d)


def _scalar(v: np.ndarray | None, default: Any, what: str) -> Any:
    if v is None or v.size == 0:
        return default
    if v.size != 1:
        raise OpRuntimeError(f"{what} must hold one value, got shape {v.shape}")
    return v.reshape(-1)[0]


@register("NonMaxSuppression", Dynamism.EDO, infer=_nms_infer, family=DETECTION)
def non_max_suppression(ctx: KernelContext, boxes: np.ndarray, scores: np.ndarray,
                        max_out: np.ndarray | None = None, iou_threshold: np.ndarray | None = None,
                        score_threshold: np.ndarray | None = None) -> np.ndarray:
    if boxes.ndim != 3 or boxes.shape[2] != 4:
        raise OpRuntimeError(f"boxes must have shape (batches, boxes, 4), got {boxes.shape}")
    if scores.ndim != 3 or scores.shape[0] != boxes.shape[0] or scores.shape[2] != boxes.shape[1]:
        raise OpRuntimeError(f"scores must have shape (batches, classes, boxes) = ({boxes.shape[0]}, C, {boxes.shape[1]}), "
                             f"got {scores.shape}")
    limit = int(_scalar(max_out, 0, "max_output_boxes_per_class"))
    iou_t = _scalar(iou_threshold, np.float32(0), "iou_threshold")
    score_t = _scalar(score_threshold, None, "score_threshold")
    if not 0 <= float(iou_t) <= 1:
        raise OpRuntimeError(f"iou_threshold must be in [0, 1], got {float(iou_t)}")
    center = bool(ctx.attr("center_point_box", 0))
    out: list[tuple[int, int, int]] = []
    if limit <= 0 or boxes.shape[1] == 0:
        return np.zeros((0, 3), dtype=np.int64)
    for b in range(boxes.shape[0]):
        y1, x1, y2, x2 = _corners(boxes[b], center)
        area = (y2 - y1) * (x2 - x1)
        iy1 = np.maximum(y1[:, None], y1[None, :])
        ix1 = np.maximum(x1[:, None], x1[None, :])
        iy2 = np.minimum(y2[:, None], y2[None, :])
        ix2 = np.minimum(x2[:, None], x2[None, :])
        inter = np.maximum(iy2 - iy1, 0) * np.maximum(ix2 - ix1, 0)
        union = area[:, None] + area[None, :] - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where((inter > 0) & (area[:, None] > 0) & (area[None, :] > 0) & (union > 0), inter / union, 0)
        overlaps = iou > iou_t
        for c in range(scores.shape[1]):
            s = scores[b, c]
            cand = np.arange(s.shape[0]) if score_t is None else np.flatnonzero(s > score_t)
            cand = cand[np.argsort(-s[cand], kind="stable")]
            chosen: list[int] = []
            for i in cand:
                if len(chosen) >= limit:
                    break
                if chosen and overlaps[i, chosen].any():
                    continue
                chosen.append(int(i))
            out.extend((b, c, i) for i in chosen)
    return np.array(out, dtype=np.int64).reshape(-1, 3)


# -- RoiAlign ---------------------------------------------------------------------------


def _roialign_infer(ctx: InferContext) -> list[Type]:
    tx, tr = tensor_input(ctx, 0), tensor_input(ctx, 1)
    n: Dim = tr.shape[0] if tr is not None and tr.shape is not None and len(tr.shape) == 2 else None
    c: Dim = tx.shape[1] if tx is not None and tx.shape is not None and len(tx.shape) == 4 else None
    oh, ow = int(ctx.attr("output_height", 1)), int(ctx.attr("output_width", 1))
    return [TensorType(tx.dtype if tx else None, (n, c, oh, ow))]


def _axis_samples(start: float, bin_size: float, out: int, grid: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Along one axis: low index, high index, low weight, high weight, validity of out*grid samples."""
    pos = start + (np.arange(out)[:, None] + (np.arange(grid)[None, :] + 0.5) / grid) * bin_size
    pos = pos.reshape(-1)
    valid = (pos >= -1.0) & (pos <= size)
    p = np.maximum(pos, 0.0)
    lo = np.floor(p).astype(np.int64)
    at_edge = lo >= size - 1
    lo = np.where(at_edge, size - 1, lo)
    hi = np.where(at_edge, size - 1, lo + 1)
    p = np.where(at_edge, lo.astype(p.dtype), p)
    frac = p - lo
    w_hi = np.where(valid, frac, 0.0)
    w_lo = np.where(valid, 1.0 - frac, 0.0)
    return lo, hi, w_lo, w_hi


@register("RoiAlign", Dynamism.ISDOS, infer=_roialign_infer, family=DETECTION)
def roi_align(ctx: KernelContext, x: np.ndarray, rois: np.ndarray, batch_indices: np.ndarray) -> np.ndarray:
    if x.ndim != 4:
        raise OpRuntimeError(f"RoiAlign needs X of shape (N, C, H, W), got {x.shape}")
    if rois.ndim != 2 or rois.shape[1] != 4 or batch_indices.shape != (rois.shape[0],):
        raise OpRuntimeError(f"rois must be (num_rois, 4) and batch_indices (num_rois,), got {rois.shape} and {batch_indices.shape}")
    n, c, h, w = x.shape
    oh, ow = int(ctx.attr("output_height", 1)), int(ctx.attr("output_width", 1))
    ratio = int(ctx.attr("sampling_ratio", 0))
    scale = float(ctx.attr("spatial_scale", 1.0))
    mode = str(ctx.attr("mode", "avg"))
    if mode not in ("avg", "max"):
        raise OpRuntimeError(f"RoiAlign mode must be 'avg' or 'max', got '{mode}'")
    ctm = str(ctx.attr("coordinate_transformation_mode", "half_pixel" if ctx.opset >= 16 else "output_half_pixel"))
    if ctm not in ("half_pixel", "output_half_pixel"):
        raise OpRuntimeError(f"coordinate_transformation_mode must be half_pixel or output_half_pixel, got '{ctm}'")
    offset = 0.5 if ctm == "half_pixel" else 0.0
    out = np.zeros((rois.shape[0], c, oh, ow), dtype=x.dtype)
    xf = x.astype(np.float64)
    for r in range(rois.shape[0]):
        bi = int(batch_indices[r])
        if not 0 <= bi < n:
            raise OpRuntimeError(f"batch_indices[{r}] = {bi} is out of range for a batch of {n}")
        x1, y1, x2, y2 = (float(v) * scale for v in rois[r])
        x1, y1, x2, y2 = x1 - offset, y1 - offset, x2 - offset, y2 - offset
        rw, rh = x2 - x1, y2 - y1
        if ctm == "output_half_pixel":
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / oh, rw / ow
        gh = ratio if ratio > 0 else int(np.ceil(rh / oh))
        gw = ratio if ratio > 0 else int(np.ceil(rw / ow))
        gh, gw = max(gh, 1), max(gw, 1)
        ylo, yhi, wylo, wyhi = _axis_samples(y1, bh, oh, gh, h)
        xlo, xhi, wxlo, wxhi = _axis_samples(x1, bw, ow, gw, w)
        img = xf[bi]  # C, H, W
        if mode == "avg":
            # separable: interpolation matrices along each axis
            my = np.zeros((oh * gh, h))
            np.add.at(my, (np.arange(oh * gh), ylo), wylo)
            np.add.at(my, (np.arange(oh * gh), yhi), wyhi)
            mx = np.zeros((ow * gw, w))
            np.add.at(mx, (np.arange(ow * gw), xlo), wxlo)
            np.add.at(mx, (np.arange(ow * gw), xhi), wxhi)
            s = np.einsum("ph,chw,qw->cpq", my, img, mx)
            out[r] = s.reshape(c, oh, gh, ow, gw).mean(axis=(2, 4)).astype(x.dtype)
        else:
            # NOTE: max mode takes the largest weighted corner term of each sample, as ONNX Runtime does.
            terms = [
                img[:, ya][:, :, xa] * (wa[:, None] * wb[None, :])
                for ya, wa in ((ylo, wylo), (yhi, wyhi))
                for xa, wb in ((xlo, wxlo), (xhi, wxhi))
            ]
            m = np.maximum.reduce(terms)
            out[r] = m.reshape(c, oh, gh, ow, gw).max(axis=(2, 4)).astype(x.dtype)
    return out
