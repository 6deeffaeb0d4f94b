"""Fast kernels for the compiled runtime: one closure per op, its attributes bound once.

``fast_kernel(op, attrs, opset)`` returns a callable taking the op's runtime
inputs (as the reference kernel does) for the common cases whose meaning is
plain NumPy (float32/float64 arithmetic, MatMul, layout ops with constant
parameters...), and for the heavy ops it hands them to ``pliant.runtime.native``
when that module offers them; None means "use the reference kernel".  Each
fast kernel computes what the reference kernel computes (the tests run every
model both ways); they differ only in skipping work the compiler proved
unnecessary (attribute parsing, dtype dispatch, float64 detours).
"""

from __future__ import annotations

import ctypes
import importlib
import math
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from pliant.errors import OpRuntimeError
from pliant.ir.core import Op
from pliant.ir.types import TensorType
from pliant.ops.typing import constant_value

Kernel = Callable[..., Any]
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_NUMERIC = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int32), np.dtype(np.int64))


def _dtype(op: Op, i: int) -> np.dtype[Any] | None:
    v = op.operands[i] if i < len(op.operands) else None
    t = v.type if v is not None else None
    if isinstance(t, TensorType) and t.dtype is not None:
        try:
            return np.dtype(t.dtype.numpy)
        except TypeError:
            return None
    return None


def _all_dtypes(op: Op, allowed: tuple[np.dtype[Any], ...]) -> bool:
    dts = [_dtype(op, i) for i, v in enumerate(op.operands) if v is not None]
    return bool(dts) and all(d in allowed for d in dts) and len(set(dts)) == 1


def _const_ints(op: Op, i: int) -> list[int] | None:
    c = constant_value(op.operands[i]) if i < len(op.operands) else None
    return None if c is None else [int(v) for v in np.asarray(c).reshape(-1)]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # NOTE: the tanh form never overflows (1 / (1 + exp(-x)) does for x < -88 in float32)
    y = np.tanh(x * x.dtype.type(0.5))
    y += 1
    y *= x.dtype.type(0.5)
    return y


_UNARY: dict[str, Kernel] = {
    "Relu": lambda x: np.maximum(x, x.dtype.type(0)),
    "Neg": np.negative,
    "Abs": np.abs,
    "Exp": np.exp,
    "Tanh": np.tanh,
    "Sqrt": np.sqrt,
    "Sigmoid": _sigmoid,
    "Reciprocal": lambda x: np.divide(x.dtype.type(1), x),
    "Identity": lambda x: x,
}
_BINARY: dict[str, Kernel] = {
    "Add": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
    "Div": np.divide,
    "Pow": np.power,
}
_COMPARE: dict[str, Kernel] = {
    "Equal": np.equal,
    "Less": np.less,
    "Greater": np.greater,
    "LessOrEqual": np.less_equal,
    "GreaterOrEqual": np.greater_equal,
}


def fast_kernel(op: Op, attrs: dict[str, Any], opset: int) -> Kernel | None:
    """A fast kernel for ``op``, or None when the reference kernel must run."""
    if op.domain == "pliant" and op.name == "ShapeExpr":
        return _shape_expr(op)
    if op.domain == "pliant" and op.name == "PackedConv":
        return fused_conv_kernel(op, attrs)
    if op.domain != "" or op.regions:
        return None
    name = op.name
    n_in = sum(1 for v in op.operands if v is not None)
    if name in _UNARY and n_in == 1 and _all_dtypes(op, _FLOATS):
        return _UNARY[name]
    if name in _BINARY and n_in == 2 and _all_dtypes(op, _FLOATS):
        return _BINARY[name]
    if name in ("Add", "Sub", "Mul") and n_in == 2 and _all_dtypes(op, (np.dtype(np.int64),)):
        return _BINARY[name]
    if name in _COMPARE and n_in == 2 and _all_dtypes(op, _NUMERIC):
        return _COMPARE[name]
    if name == "MatMul" and _all_dtypes(op, _FLOATS):
        return np.matmul
    if name == "Gemm" and _all_dtypes(op, _FLOATS):
        return _gemm(attrs)
    if name == "Where" and _dtype(op, 1) in _NUMERIC and _dtype(op, 1) == _dtype(op, 2):
        return np.where
    if name == "Cast":
        return _cast(op, attrs)
    if name == "Transpose":
        perm = attrs.get("perm")
        return (lambda x: np.transpose(x, perm)) if perm is not None else np.transpose  # type: ignore[misc]
    if name == "Reshape" and opset >= 5:
        return _reshape(op, attrs)
    if name in ("Unsqueeze", "Squeeze") and opset >= 13:
        axes = _const_ints(op, 1)
        if axes is not None:
            return _unsqueeze(axes) if name == "Unsqueeze" else _squeeze(axes)
    if name == "Concat":
        axis = int(attrs.get("axis", 0))
        return lambda *xs: np.concatenate(xs, axis=axis)
    if name == "Gather" and _dtype(op, 1) in (np.dtype(np.int64), np.dtype(np.int32)):
        axis = int(attrs.get("axis", 0))
        return lambda x, idx: np.take(x, idx, axis=axis)
    if name == "Shape":
        start, end = attrs.get("start"), attrs.get("end") if opset >= 15 else None
        if opset < 15 or (int(start or 0) == 0 and end is None):
            return lambda x: np.array(x.shape, dtype=np.int64)
    if name == "Slice" and opset >= 10:
        return _slice(op)
    if name == "Identity":
        return lambda x: x
    if name == "Not":
        return np.logical_not
    if name in ("Sin", "Cos", "Log", "Floor", "Ceil") and _all_dtypes(op, _FLOATS):
        return {"Sin": np.sin, "Cos": np.cos, "Log": np.log, "Floor": np.floor, "Ceil": np.ceil}[name]
    if name == "Expand" and _dtype(op, 0) is not None:
        return lambda x, shape: np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(shape.tolist())))
    if name == "Flatten":
        axis = int(attrs.get("axis", 1))
        return lambda x: x.reshape(math.prod(x.shape[:axis if axis >= 0 else axis + x.ndim]), -1)
    if name == "GlobalAveragePool" and _all_dtypes(op, _FLOATS):
        return lambda x: x.mean(axis=tuple(range(2, x.ndim)), keepdims=True)
    if name == "ConstantOfShape":
        v = attrs.get("value")
        fill = np.asarray(v).reshape(-1)[:1] if v is not None else np.zeros(1, np.float32)
        return lambda shape: np.full(tuple(shape.tolist()), fill[0], dtype=fill.dtype)
    if name == "Range" and _all_dtypes(op, (np.dtype(np.int64), np.dtype(np.int32))):
        return lambda s, lim, d: np.arange(s.item(), lim.item(), d.item(), dtype=s.dtype)
    if name in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin") and _dtype(op, 0) in _NUMERIC:
        return _reduce(op, attrs, opset)
    if name == "Clip" and opset >= 11 and _all_dtypes(op, _FLOATS):
        return _clip
    if name == "NonMaxSuppression" and _dtype(op, 0) in _FLOATS:
        return _nms(bool(int(attrs.get("center_point_box", 0))))
    if name == "Resize" and opset >= 11 and _dtype(op, 0) == np.dtype(np.float32):
        return _resize(op, attrs, opset)
    if name == "TopK" and opset >= 10 and _dtype(op, 0) in _FLOATS:
        return _topk(op, attrs)
    if name == "NonZero":
        # NOTE: as the reference, without its wrapper's error-state context (2-3 us a call; MoE makes 16)
        return lambda x: np.array(np.nonzero(x.reshape(1) if x.ndim == 0 else x), dtype=np.int64).reshape(max(x.ndim, 1), -1)
    if name in ("Softmax", "LogSoftmax", "LayerNormalization", "Erf", "Gelu", "Conv", "MaxPool",
                "AveragePool", "GlobalAveragePool"):
        return _native(op, attrs, opset)
    return None


_REDUCE: dict[str, Kernel] = {"ReduceSum": np.sum, "ReduceMean": np.mean, "ReduceMax": np.max, "ReduceMin": np.min}


def _shape_expr(op: Op) -> Kernel:
    """``pliant.ShapeExpr`` with its expressions compiled and its bindings resolved once."""
    from pliant.ir.dims import compile_dims, parse_dim
    from pliant.ir.dtypes import DType

    attrs: dict[str, Any] = dict(op.attrs)
    symbols = [str(x) for x in attrs["symbols"]]
    bind = [int(b) for b in attrs["bind"]]
    where = [(name, bind[2 * k], bind[2 * k + 1]) for k, name in enumerate(symbols)]
    fn = compile_dims([parse_dim(str(e)) for e in attrs["exprs"]], symbols)
    dtype = DType.from_onnx(int(attrs["dtype"])).numpy
    shape = tuple(int(d) for d in attrs["shape"])

    def shape_expr(*sources: np.ndarray) -> np.ndarray:
        return np.array(fn({name: sources[src].shape[axis] for name, src, axis in where}), dtype=dtype).reshape(shape)

    return shape_expr


def _reduce(op: Op, attrs: dict[str, Any], opset: int) -> Kernel | None:
    fn = _REDUCE[op.name]
    since = 13 if op.name == "ReduceSum" else 18
    if opset >= since:
        if len(op.operands) > 1 and op.operands[1] is not None:
            axes = _const_ints(op, 1)
            if axes is None:
                return None
        else:
            axes = []
    else:
        axes = [int(a) for a in attrs.get("axes") or []]
    keep = bool(int(attrs.get("keepdims", 1)))
    if not axes and int(attrs.get("noop_with_empty_axes", 0)):
        return None
    ax = tuple(axes) if axes else None

    def reduce(x: np.ndarray, *_: Any) -> np.ndarray:
        if x.size == 0:
            raise _Fallback("empty reduction")  # NOTE: identities and errors of empty reductions: the reference's
        return np.asarray(fn(x, axis=ax, keepdims=keep))

    return _guarded(reduce, native=False)


def _topk(op: Op, attrs: dict[str, Any]) -> Kernel | None:
    """TopK of a float tensor with a constant k: one stable sort of the keys (negated for the largest).

    Equal values come in ascending index order, as the reference's; a NaN (whose place the sort of negated
    keys would change) sends the call to the reference kernel.
    """
    ks = _const_ints(op, 1)
    if ks is None or len(ks) != 1:
        return None
    k = ks[0]
    axis, largest = int(attrs.get("axis", -1)), bool(int(attrs.get("largest", 1)))

    native: list[Any] = []

    def topk(x: np.ndarray, _k: Any = None) -> tuple[np.ndarray, np.ndarray]:
        if x.ndim == 0 or not 0 <= k <= x.shape[axis] or not -x.ndim <= axis < x.ndim:
            raise _Fallback("TopK: the reference kernel reports this case")
        if k <= TOPK_SMALL and axis in (-1, x.ndim - 1) and x.dtype == np.float32 and x.flags.c_contiguous:
            if not native:
                native.append(_topk_native())
            if native[0] is not None:
                picked = native[0](x, k, largest)
                if picked is not None:
                    return picked
        keys = np.negative(x) if largest else x
        if np.isnan(keys.reshape(-1).max(initial=0)):
            raise _Fallback("TopK: NaN keys")
        order = np.argsort(keys, axis=axis, kind="stable")
        # NOTE: a contiguous copy: units take C-contiguous inputs only
        idx = np.ascontiguousarray(order[..., :k]) if axis in (-1, x.ndim - 1) else np.take(order, np.arange(k), axis=axis)
        return np.take_along_axis(x, idx, axis=axis), idx

    return _guarded(topk, native=False)


TOPK_SMALL = 16
"""The largest k whose TopK (last axis, float32) one pass in C takes (``topk.c``: O(n*k) per row)."""


def _topk_native() -> Callable[[np.ndarray, int, bool], tuple[np.ndarray, np.ndarray] | None] | None:
    """``topk.c`` for float32 rows: ``topk(x, k, largest) -> (values, indices)``, or None where a key is NaN;
    None without a C compiler."""
    from pliant.kernels.compiled import data_pointers
    from pliant.kernels.errors import TCError
    from pliant.runtime import csource

    try:
        fn = csource.load("topk")
    except (TCError, OSError):
        return None

    def topk(x: np.ndarray, k: int, largest: bool) -> tuple[np.ndarray, np.ndarray] | None:
        n = x.shape[-1]
        rows = x.size // n if n else 0
        values = np.empty((*x.shape[:-1], k), np.float32)
        indices = np.empty((*x.shape[:-1], k), np.int64)
        if rows == 0 or k == 0:
            return values, indices
        px, pv, pi = data_pointers([x, values, indices])
        if fn((ctypes.c_void_p * 3)(px, pv, pi), (ctypes.c_int64 * 4)(rows, n, k, int(largest))) != 0:
            return None  # NOTE: a NaN key: the NumPy path sends the call to the reference kernel
        return values, indices

    return topk


def _clip(x: np.ndarray, lo: np.ndarray | None = None, hi: np.ndarray | None = None) -> np.ndarray:
    """min(max(x, lo), hi) as np.clip computes it (NaN stays NaN; lo > hi gives hi), without np.clip's own
    overhead (11 of 12 us on a (100, 4) array)."""
    if lo is None and hi is None:
        return x
    y = np.maximum(x, lo) if lo is not None else x
    if hi is not None:
        # NOTE: in place where y is a fresh array (not x, and not the NumPy scalar a 0-d x gives)
        y = np.minimum(y, hi, out=y) if isinstance(y, np.ndarray) and y is not x else np.minimum(y, hi)
    return np.asarray(y)


def _nms(center: bool) -> Kernel:
    """NonMaxSuppression as the reference decides it, without its all-pairs IoU matrix.

    Each class's candidates (above the score threshold, by descending score,
    stable) are taken in order; taking one suppresses every later candidate
    whose IoU with it exceeds the threshold, computed with the reference's own
    arithmetic so that every decision is the same.
    """
    from pliant.ops.detection import _corners, _scalar

    built: list[Callable[[np.ndarray, np.ndarray, bool, Any, Any, int], np.ndarray] | None] = []

    def nms(boxes: np.ndarray, scores: np.ndarray, max_out: np.ndarray | None = None,
            iou_threshold: np.ndarray | None = None, score_threshold: np.ndarray | None = None) -> np.ndarray:
        if boxes.ndim != 3 or boxes.shape[2] != 4 or scores.ndim != 3 or scores.shape[0] != boxes.shape[0] \
                or scores.shape[2] != boxes.shape[1]:
            raise _Fallback("unexpected shapes: the reference kernel reports them")
        limit = int(_scalar(max_out, 0, "max_output_boxes_per_class"))
        iou_t = _scalar(iou_threshold, np.float32(0), "iou_threshold")
        score_t = _scalar(score_threshold, None, "score_threshold")
        if not 0 <= float(iou_t) <= 1:
            raise _Fallback("iou_threshold out of range: the reference kernel reports it")
        out: list[np.ndarray] = []
        if limit <= 0 or boxes.shape[1] == 0:
            return np.zeros((0, 3), dtype=np.int64)
        if not built:
            built.append(_nms_native())  # NOTE: once per kernel: it keeps its work arrays
        native = built[0]
        if native is not None and boxes.dtype == scores.dtype == np.float32 and not np.isnan(boxes).any():
            return native(np.ascontiguousarray(boxes), np.ascontiguousarray(scores), center, iou_t, score_t, limit)
        for b in range(boxes.shape[0]):
            y1, x1, y2, x2 = _corners(boxes[b], center)
            area = (y2 - y1) * (x2 - x1)
            for c in range(scores.shape[1]):
                s = scores[b, c]
                cand = np.arange(s.shape[0]) if score_t is None else np.flatnonzero(s > score_t)
                cand = cand[np.argsort(-s[cand], kind="stable")]
                alive = np.ones(cand.shape[0], dtype=bool)
                chosen: list[int] = []
                for k in range(cand.shape[0]):
                    if not alive[k]:
                        continue
                    i = int(cand[k])
                    chosen.append(i)
                    if len(chosen) >= limit:
                        break
                    rest = cand[k + 1:]
                    inter = (np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
                             * np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0))
                    union = area[i] + area[rest] - inter
                    with np.errstate(divide="ignore", invalid="ignore"):
                        iou = np.where((inter > 0) & (area[i] > 0) & (area[rest] > 0) & (union > 0), inter / union, 0)
                    alive[k + 1:] &= ~(iou > iou_t)
                if chosen:
                    sel = np.empty((len(chosen), 3), dtype=np.int64)
                    sel[:, 0], sel[:, 1], sel[:, 2] = b, c, chosen
                    out.append(sel)
        return np.concatenate(out) if out else np.zeros((0, 3), dtype=np.int64)

    return _guarded(nms, native=False)


def _nms_native() -> Callable[[np.ndarray, np.ndarray, bool, Any, Any, int], np.ndarray] | None:
    """The whole op in C (``nms.c``: corners, candidates, their stable sort, the greedy pass with the
    reference's float32 decisions, the selected rows), or None without a C compiler;
    ``nms(boxes, scores, center, iou, score threshold or None, limit) -> selected (K, 3)``."""
    from pliant.kernels.compiled import data_pointers
    from pliant.kernels.errors import TCError
    from pliant.runtime import csource

    try:
        fn = csource.load("nms")
    except (TCError, OSError):
        return None
    # NOTE: the work arrays of the last shape, per thread (a compiled model may be called from several):
    # allocating them took a third of a 125-box, 20-class call
    local = threading.local()

    def nms(boxes: np.ndarray, scores: np.ndarray, center: bool, iou_t: Any, score_t: Any, limit: int) -> np.ndarray:
        batches, classes, n = scores.shape
        work = getattr(local, "work", None)
        if work is None or work[0] != scores.shape:
            arrays = [np.empty((batches, classes, n), np.int64), np.empty((batches, classes), np.int64),
                      np.empty(max(n, 1), np.uint8), np.empty(max(10 * n, 1), np.float32),
                      np.empty(max(2 * n, 1), np.int64), np.empty(max(batches * classes * n, 1) * 3, np.int64),
                      np.empty(1, np.int64), np.empty(2, np.float32)]
            work = local.work = (scores.shape, arrays, data_pointers(arrays))
        _, arrays, ptrs = work
        t = arrays[7]
        t[0], t[1] = iou_t, 0.0 if score_t is None else score_t
        px, ps = data_pointers([boxes, scores])
        fn((ctypes.c_void_p * 10)(px, ps, ptrs[7], *ptrs[:7]),
           (ctypes.c_int64 * 6)(batches, classes, n, limit, score_t is not None, center))
        return arrays[5][: 3 * int(arrays[6][0])].reshape(-1, 3).copy()

    return nms


_RESIZE_TRANSFORMS = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric")


def _resize(op: Op, attrs: dict[str, Any], opset: int) -> Kernel | None:
    """Linear Resize of the last two axes of a float32 tensor in C (``resize.c``), taps computed here.

    Other modes, antialiasing, excluded outside taps, cropping and resizes of
    other axes take the reference kernel.  Two taps per axis as the reference's
    weights have them (an exact hit takes the left window; clamped at the
    edges), in float32 where the reference accumulates in float64.
    """
    from pliant.ops import resize as ref
    from pliant.ops.registry import KernelContext
    from pliant.runtime import csource

    transform = str(attrs.get("coordinate_transformation_mode", "half_pixel"))
    if str(attrs.get("mode", "nearest")) != "linear" or transform not in _RESIZE_TRANSFORMS \
            or int(attrs.get("antialias", 0) or 0) or int(attrs.get("exclude_outside", 0) or 0):
        return None
    ctx = KernelContext(op, attrs, opset, None)

    def taps(n_in: int, n_out: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
        xc = ref._coords(transform, n_out, n_in, scale, (0.0, 1.0))
        base = np.floor(xc)
        base = np.where(base == xc, base - 1, base)
        j = base[:, None] + np.array([0.0, 1.0])
        w = np.clip(1 - np.abs(j - xc[:, None]), 0.0, 1.0)
        return np.clip(j, 0, n_in - 1).astype(np.int64).reshape(-1), w.astype(np.float32).reshape(-1)

    # NOTE: per input shape and scales/sizes: the output shape, the taps' pointers and the sizes (planning
    # them took 8 of a 128 -> 32 px resize's 15 us)
    plans: dict[tuple[Any, ...], tuple[list[int], list[np.ndarray], list[int], Any, Any]] = {}

    def plan(x: np.ndarray, args: tuple[Any, ...]) -> tuple[list[int], list[np.ndarray], list[int], Any, Any]:
        from pliant.kernels.compiled import data_pointers

        _, scales, sizes = ref._resize_inputs(ctx, args)
        if x.ndim < 2 or (scales is not None and sizes is not None) or (scales is None and sizes is None):
            raise _Fallback("the reference kernel handles (or reports) this")
        out, sc = ref._plan(ctx, list(x.shape), scales, sizes, OpRuntimeError)
        r = x.ndim
        if any(out[a] != x.shape[a] or sc[a] != 1.0 for a in range(r - 2)) or 0 in out or 0 in x.shape:
            raise _Fallback("a resize of a leading axis, or an empty tensor")
        arrays = [*taps(x.shape[-2], out[-2], sc[-2]), *taps(x.shape[-1], out[-1], sc[-1])]
        counts = (ctypes.c_int64 * 5)(math.prod(x.shape[:-2]), *x.shape[-2:], *out[-2:])
        return out, arrays, data_pointers(arrays), counts, csource.load("resize")

    def run(x: np.ndarray, *args: Any) -> np.ndarray:
        from pliant.kernels.compiled import data_pointers

        key = (x.shape, *(None if a is None else (np.asarray(a).dtype.str, np.asarray(a).tobytes()) for a in args))
        hit = plans.get(key)
        if hit is None:
            hit = plan(x, args)
            if len(plans) < 64:
                plans[key] = hit
        out, _, ptrs, counts, fn = hit
        x = np.ascontiguousarray(x)
        y = np.empty(out, np.float32)
        fn((ctypes.c_void_p * 6)(*data_pointers([x, y]), *ptrs), counts)
        return y

    return _guarded(run)


def _gemm(attrs: dict[str, Any]) -> Kernel:
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    ta, tb = int(attrs.get("transA", 0)), int(attrs.get("transB", 0))

    def gemm(a: np.ndarray, b: np.ndarray, c: np.ndarray | None = None) -> np.ndarray:
        y = np.matmul(a.T if ta else a, b.T if tb else b)
        if alpha != 1.0:
            y *= y.dtype.type(alpha)
        if c is not None:
            y += c if beta == 1.0 else c * c.dtype.type(beta)
        return y

    return gemm


def _cast(op: Op, attrs: dict[str, Any]) -> Kernel | None:
    from pliant.ir.dtypes import DType

    src = _dtype(op, 0)
    to = attrs.get("to")
    if src is None or to is None:
        return None
    dst = np.dtype(DType.from_onnx(int(to)).numpy)
    ok = (*_NUMERIC, np.dtype(np.float16), np.dtype(np.bool_))
    if src not in ok or dst not in ok:
        return None
    if src == dst:
        return lambda x: x
    return lambda x: x.astype(dst)


def _reshape(op: Op, attrs: dict[str, Any]) -> Kernel | None:
    if int(attrs.get("allowzero", 0)):
        return None

    def reshape(x: np.ndarray, shape: np.ndarray) -> np.ndarray:
        target = shape.tolist()
        if 0 in target:
            target = [x.shape[i] if v == 0 else v for i, v in enumerate(target)]
        return x.reshape(target)

    return reshape


def _unsqueeze(axes: list[int]) -> Kernel:
    def unsqueeze(x: np.ndarray, _axes: Any = None) -> np.ndarray:
        return np.expand_dims(x, tuple(a if a >= 0 else a + x.ndim + len(axes) for a in axes))

    return unsqueeze


def _squeeze(axes: list[int]) -> Kernel:
    def squeeze(x: np.ndarray, _axes: Any = None) -> np.ndarray:
        return np.squeeze(x, tuple(a if a >= 0 else a + x.ndim for a in axes))

    return squeeze


def _slice(op: Op) -> Kernel | None:
    parts = [_const_ints(op, i) if i < len(op.operands) and op.operands[i] is not None else None for i in range(1, 5)]
    starts, ends, axes, steps = parts
    if starts is None or ends is None:
        return None
    if axes is None:
        if len(op.operands) > 3 and op.operands[3] is not None:
            return None
        axes = list(range(len(starts)))
    if steps is None:
        if len(op.operands) > 4 and op.operands[4] is not None:
            return None
        steps = [1] * len(starts)
    if any(p <= 0 for p in steps) or not len(starts) == len(ends) == len(axes) == len(steps):
        return None
    # NOTE: with positive steps, Python's slice clamps starts and ends exactly as ONNX does
    spec = list(zip(axes, starts, ends, steps))

    def slice_(x: np.ndarray, *_: Any) -> np.ndarray:
        sl: list[slice] = [slice(None)] * x.ndim
        for a, s, e, p in spec:
            sl[a + x.ndim if a < 0 else a] = slice(s, e, p)
        return x[tuple(sl)]

    return slice_


def _native(op: Op, attrs: dict[str, Any], opset: int) -> Kernel | None:
    """The heavy ops, through ``pliant.runtime.native`` when it has them (float32 only)."""
    if _dtype(op, 0) != np.dtype(np.float32):
        return None
    try:
        native = importlib.import_module("pliant.runtime.native")
    except ImportError:
        return None
    name = op.name
    fn: Kernel | None = None
    if name in ("Softmax", "LogSoftmax") and opset >= 13 and hasattr(native, "softmax"):
        axis = int(attrs.get("axis", -1))
        f = native.softmax if name == "Softmax" else getattr(native, "log_softmax", None)
        fn = (lambda x: f(x, axis)) if f is not None else None
    elif name == "LayerNormalization" and len(op.results) == 1 and hasattr(native, "layer_norm"):
        axis, eps = int(attrs.get("axis", -1)), float(attrs.get("epsilon", 1e-5))
        fn = lambda x, s, b=None: native.layer_norm(x, s, b, axis, eps)  # noqa: E731
    elif name == "Erf" and hasattr(native, "erf"):
        fn = native.erf
    elif name == "Gelu" and hasattr(native, "gelu"):
        approx = str(attrs.get("approximate", "none"))
        fn = lambda x: native.gelu(x, approx)  # noqa: E731
    elif name == "Conv" and hasattr(native, "conv") and str(attrs.get("auto_pad", "NOTSET")) == "NOTSET":
        fn = _conv(native, attrs)
    return _guarded(fn) if fn is not None else None


def _conv(native: Any, attrs: dict[str, Any]) -> Kernel:
    """Conv, PackedConv, or FusedConv with its epilogue (a residual ``z`` and the attributes' activation)."""
    activation = str(attrs.get("activation") or "")
    lo, hi, alpha = (list(attrs.get("activation_params") or []) + [0.0, 0.0, 0.0])[:3]
    params = (float(lo), float(hi), float(alpha))
    packed = attrs.get("weight_shape") or None
    layout = str(attrs.get("layout") or "panels")

    def conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, z: np.ndarray | None = None) -> np.ndarray:
        nsp = x.ndim - 2
        strides = list(attrs.get("strides") or [1] * nsp)
        dil = list(attrs.get("dilations") or [1] * nsp)
        pads = list(attrs.get("pads") or [0] * (2 * nsp))
        return native.conv(x, w, b, strides, pads, dil, int(attrs.get("group", 1)),  # type: ignore[no-any-return]
                           z, activation, params, packed, layout)

    return conv


def fused_conv_kernel(op: Op, attrs: dict[str, Any]) -> Kernel | None:
    """The native kernel of a ``pliant.FusedConv`` (see ``pliant.transforms.fuse_conv``) or a
    ``pliant.PackedConv``; raises ``FALLBACK`` where it declines, and the op's region (the reference kernel)
    runs instead."""
    try:
        native = importlib.import_module("pliant.runtime.native")
    except ImportError:
        return None
    return _guarded(_conv(native, attrs))


class _Fallback(Exception):
    """A native kernel declined these inputs; the reference kernel runs instead."""


def _guarded(fn: Kernel, native: bool = True) -> Kernel:
    """``fn``, but raising ``_Fallback`` where the native layer refuses (an unsupported case)."""

    from pliant.kernels.errors import CompileError, CompilerNotFoundError

    def run(*xs: Any) -> Any:
        try:
            return fn(*xs)
        except (ValueError, CompileError, CompilerNotFoundError) as e:
            # NOTE: an unsupported case, or no C compiler for the native kernel: the reference kernel runs
            raise _Fallback(str(e)) from None

    run.fallible = True  # type: ignore[attr-defined]
    run.native = native  # type: ignore[attr-defined]
    return run


FALLBACK = _Fallback
__all__ = ["FALLBACK", "fast_kernel", "fused_conv_kernel", "fused_kernel"]


def fused_kernel(op: Op, *, specialize: bool = False) -> Kernel | None:
    """The generated kernel of a ``pliant.Fused`` op (see ``pliant.transforms.fuse_elementwise``).

    It compiles on first use (with ``specialize``, a version per size signature
    with the sizes built in, for a specialised program); where that fails (no C compiler), it raises
    ``FALLBACK`` from then on and the op's region runs instead.
    """
    try:
        import pliant.tc as tc
    except ImportError:
        return None
    source = str(op.attrs["source"])
    flat: list[int] = list(op.attrs["kept"])  # type: ignore[arg-type]
    kept: list[list[int]] = [[]]
    for a in flat:
        if a < 0:
            kept.append([])
        else:
            kept[-1].append(a)
    kept = kept[: len(op.operands)]
    ones = tuple(op.attrs["out_ones"])  # type: ignore[arg-type]
    kernel = _tc_kernel(source)
    broken: list[BaseException] = []

    def run(*xs: np.ndarray) -> np.ndarray:
        if broken:
            raise _Fallback(str(broken[0]))
        args = [x.reshape([x.shape[p] for p in k]) if len(k) != x.ndim else x for x, k in zip(xs, kept)]
        try:
            y = kernel(*args, specialize=specialize)
        except (tc.CompileError, tc.CompilerNotFoundError) as e:
            broken.append(e)
            raise _Fallback(str(e)) from None
        if not ones:
            return y  # type: ignore[no-any-return]
        shape = list(y.shape)
        for q in ones:
            shape.insert(q, 1)
        return y.reshape(shape)  # type: ignore[no-any-return]

    run.fallible = True  # type: ignore[attr-defined]
    run.native = True  # type: ignore[attr-defined]
    return run


_TC_KERNELS: dict[str, Any] = {}


def _tc_kernel(source: str) -> Any:
    k = _TC_KERNELS.get(source)
    if k is None:
        import pliant.tc as tc

        k = _TC_KERNELS[source] = tc.define(source)
    return k
