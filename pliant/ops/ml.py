"""Classic ML ops of the ``ai.onnx.ml`` domain.

ArrayFeatureExtractor, Binarizer, LabelEncoder, TreeEnsemble (the opset-5
unified tree op), and the simple transforms Scaler, Normalizer, Imputer,
OneHotEncoder and LinearRegressor.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pliant.errors import OpRuntimeError, ShapeInferenceError
from pliant.ir.dims import Dim
from pliant.ir.dtypes import DType
from pliant.ir.types import TensorType, Type
from pliant.ops.infer import same_as_input, tensor_input
from pliant.ops.registry import Dynamism, InferContext, KernelContext, register

ML = "ml"
DOMAIN = "ai.onnx.ml"


# -- post transforms (shared by TreeEnsemble and LinearRegressor) -------------------

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _erfinv(y: np.ndarray) -> np.ndarray:
    """The inverse error function on (-1, 1): a closed-form start refined by Newton steps."""
    y = np.clip(np.asarray(y, dtype=np.float64), -1.0, 1.0)
    a = 0.147
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ln = np.log1p(-y * y)
        t = 2.0 / (math.pi * a) + ln / 2.0
        x = np.sign(y) * np.sqrt(np.sqrt(t * t - ln / a) - t)
        inner = np.abs(y) < 1.0
        for _ in range(3):
            err = _erf(np.where(inner, x, 0.0)) - y
            x = np.where(inner, x - err / (2.0 / math.sqrt(math.pi) * np.exp(-x * x)), x)
    return x


def post_transform(scores: np.ndarray, how: int | str) -> np.ndarray:
    """Apply an ML post transform (NONE, SOFTMAX, LOGISTIC, SOFTMAX_ZERO, PROBIT) along the last axis."""
    names = {0: "NONE", 1: "SOFTMAX", 2: "LOGISTIC", 3: "SOFTMAX_ZERO", 4: "PROBIT"}
    name = names.get(how, None) if isinstance(how, int) else str(how).upper()
    if name is None or name not in names.values():
        raise OpRuntimeError(f"unknown post_transform {how!r}; expected one of {list(names.values())}")
    s = scores.astype(np.float64)
    if name == "NONE":
        return scores
    if name == "LOGISTIC":
        out = 1.0 / (1.0 + np.exp(-s))
    elif name in ("SOFTMAX", "SOFTMAX_ZERO"):
        m = s.max(axis=-1, keepdims=True) if s.shape[-1] else s
        e = np.exp(s - m)
        if name == "SOFTMAX_ZERO":
            e = np.where(s == 0, 0.0, e)
        tot = e.sum(axis=-1, keepdims=True)
        out = np.divide(e, tot, out=np.zeros_like(e), where=tot != 0)
    else:
        out = math.sqrt(2.0) * _erfinv(2.0 * s - 1.0)
    return out.astype(scores.dtype)


# -- ArrayFeatureExtractor ---------------------------------------------------------------

def _afe_infer(ctx: InferContext) -> list[Type]:
    x, idx = tensor_input(ctx, 0), tensor_input(ctx, 1)
    dtype = x.dtype if x is not None else None
    if x is None or x.shape is None:
        return [TensorType(dtype, None)]
    n: Dim = None
    if idx is not None and idx.shape is not None:
        n = 1
        for d in idx.shape:
            n = n * d if isinstance(n, int) and isinstance(d, int) else None
    if len(x.shape) == 0:
        raise ShapeInferenceError("ArrayFeatureExtractor needs an input of rank >= 1")
    if len(x.shape) == 1:
        return [TensorType(dtype, (1, n))]
    return [TensorType(dtype, (*x.shape[:-1], n))]


@register("ArrayFeatureExtractor", Dynamism.ISDOS, domain=DOMAIN, infer=_afe_infer, family=ML)
def array_feature_extractor(ctx: KernelContext, x: np.ndarray, indices: np.ndarray) -> np.ndarray:
    if x.ndim == 0:
        raise OpRuntimeError("ArrayFeatureExtractor needs an input of rank >= 1")
    idx = indices.reshape(-1).astype(np.int64)
    n = x.shape[-1]
    bad = idx[(idx < 0) | (idx >= n)]
    if bad.size:
        raise OpRuntimeError(f"ArrayFeatureExtractor: indices {bad.tolist()} are out of range for the last axis of size {n}")
    out = x[..., idx]
    return out.reshape(1, -1) if x.ndim == 1 else out


# -- Binarizer -----------------------------------------------------------------------------------

@register("Binarizer", Dynamism.ISDOS, domain=DOMAIN, infer=same_as_input, family=ML)
def binarizer(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    threshold = float(ctx.attr("threshold", 0.0))
    return np.where(x > np.asarray(threshold).astype(x.dtype), 1, 0).astype(x.dtype)


# -- LabelEncoder -------------------------------------------------------------------------------------

def _label_encoder_table(ctx: InferContext | KernelContext) -> tuple[np.ndarray, np.ndarray, Any]:
    """(keys, values, default) of an opset-2+ LabelEncoder."""
    keys: Any = None
    for name in ("keys_tensor", "keys_strings", "keys_int64s", "keys_floats"):
        if ctx.attrs.get(name) is not None:
            keys = ctx.attrs[name]
            kname = name
            break
    values: Any = None
    for name in ("values_tensor", "values_strings", "values_int64s", "values_floats"):
        if ctx.attrs.get(name) is not None:
            values = ctx.attrs[name]
            vname = name
            break
    if keys is None or values is None:
        raise OpRuntimeError("LabelEncoder needs one keys_* and one values_* attribute")
    kdt = {"keys_strings": object, "keys_int64s": np.int64, "keys_floats": np.float32}.get(kname)
    karr = np.asarray(keys, dtype=kdt).reshape(-1) if kdt is not None else np.asarray(keys).reshape(-1)
    vdt = {"values_strings": object, "values_int64s": np.int64, "values_floats": np.float32}.get(vname)
    varr = np.asarray(values, dtype=vdt).reshape(-1) if vdt is not None else np.asarray(values).reshape(-1)
    if karr.size != varr.size:
        raise OpRuntimeError(f"LabelEncoder: {karr.size} keys but {varr.size} values")
    dt = varr.dtype
    default: Any
    if ctx.attrs.get("default_tensor") is not None:
        dflt = np.asarray(ctx.attrs["default_tensor"]).reshape(-1)
        if dflt.size != 1:
            raise OpRuntimeError(f"LabelEncoder: default_tensor must hold one value, got {dflt.size}")
        default = dflt[0]
    elif dt.kind == "O":
        default = ctx.attr("default_string", "_Unused")
    elif dt.kind in "iub":
        default = ctx.attr("default_int64", -1) if vname != "values_tensor" or dt == np.int64 else -1
    else:
        default = ctx.attr("default_float", -0.0) if vname != "values_tensor" or dt == np.float32 else -0.0
    return karr, varr, default


def _label_encoder_infer(ctx: InferContext) -> list[Type]:
    x = tensor_input(ctx, 0)
    shape = x.shape if x is not None else None
    if ctx.opset < 2:
        if x is None or x.dtype is None:
            return [TensorType(None, shape)]
        return [TensorType(DType.INT64 if x.dtype == DType.STRING else DType.STRING, shape)]
    try:
        _, values, _ = _label_encoder_table(ctx)
    except OpRuntimeError as e:
        raise ShapeInferenceError(str(e)) from None
    return [TensorType(DType.from_numpy(values.dtype), shape)]


@register("LabelEncoder", Dynamism.ISDOS, domain=DOMAIN, infer=_label_encoder_infer, family=ML)
def label_encoder(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    if ctx.opset < 2:
        classes = [str(s) for s in ctx.attr("classes_strings") or []]
        if x.dtype == object:
            lookup = {s: i for i, s in enumerate(classes)}
            dflt = int(ctx.attr("default_int64", -1))
            return np.array([lookup.get(str(s), dflt) for s in x.reshape(-1)], dtype=np.int64).reshape(x.shape)
        dflt_s = str(ctx.attr("default_string", "_Unused"))
        out = np.array([classes[int(i)] if 0 <= int(i) < len(classes) else dflt_s for i in x.reshape(-1)], dtype=object)
        return out.reshape(x.shape)
    keys, values, default = _label_encoder_table(ctx)
    is_float_key = keys.dtype.kind == "f"

    def norm(k: Any) -> Any:
        if is_float_key:
            f = float(k)
            return "nan" if math.isnan(f) else f
        return str(k) if keys.dtype == object else int(k)

    table = {norm(k): v for k, v in zip(keys, values)}
    if (x.dtype == object) != (keys.dtype == object):
        raise OpRuntimeError(f"LabelEncoder: input of dtype {x.dtype} cannot be looked up among keys of dtype {keys.dtype}")
    out = np.empty(x.size, dtype=values.dtype)
    for i, k in enumerate(x.reshape(-1)):
        out[i] = table.get(norm(k), default)
    return out.reshape(x.shape)


# -- TreeEnsemble ----------------------------------------------------------------------------------------

_LEQ, _LT, _GTE, _GT, _EQ, _NEQ, _MEMBER = range(7)


def _tree_infer(ctx: InferContext) -> list[Type]:
    x = tensor_input(ctx, 0)
    n_targets = ctx.attr("n_targets")
    t = int(n_targets) if n_targets is not None else None
    if x is None:
        return [TensorType(None, None)]
    if x.shape is not None and len(x.shape) != 2:
        raise ShapeInferenceError(f"TreeEnsemble needs an [N, F] input, got {x}")
    return [TensorType(x.dtype, (x.shape[0] if x.shape is not None else None, t))]


def _attr_array(ctx: KernelContext, name: str, dtype: Any = None) -> np.ndarray | None:
    v = ctx.attrs.get(name)
    if v is None:
        return None
    a = np.asarray(v).reshape(-1)
    return a.astype(dtype) if dtype is not None else a


@register("TreeEnsemble", Dynamism.ISDOS, domain=DOMAIN, infer=_tree_infer, family=ML)
def tree_ensemble(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    if x.ndim != 2:
        raise OpRuntimeError(f"TreeEnsemble needs an [N, F] input, got shape {x.shape}")
    n_targets = int(ctx.attr("n_targets"))
    feat = _attr_array(ctx, "nodes_featureids", np.int64)
    modes = _attr_array(ctx, "nodes_modes", np.int64)
    splits = _attr_array(ctx, "nodes_splits")
    true_ids = _attr_array(ctx, "nodes_truenodeids", np.int64)
    true_leaf = _attr_array(ctx, "nodes_trueleafs", np.int64)
    false_ids = _attr_array(ctx, "nodes_falsenodeids", np.int64)
    false_leaf = _attr_array(ctx, "nodes_falseleafs", np.int64)
    roots = _attr_array(ctx, "tree_roots", np.int64)
    leaf_t = _attr_array(ctx, "leaf_targetids", np.int64)
    leaf_w = _attr_array(ctx, "leaf_weights")
    req = {"nodes_featureids": feat, "nodes_modes": modes, "nodes_splits": splits, "nodes_truenodeids": true_ids,
           "nodes_trueleafs": true_leaf, "nodes_falsenodeids": false_ids, "nodes_falseleafs": false_leaf,
           "tree_roots": roots, "leaf_targetids": leaf_t, "leaf_weights": leaf_w}
    missing = [k for k, v in req.items() if v is None]
    if missing:
        raise OpRuntimeError(f"TreeEnsemble is missing attribute(s) {missing}")
    assert feat is not None and modes is not None and splits is not None and true_ids is not None
    assert true_leaf is not None and false_ids is not None and false_leaf is not None and roots is not None
    assert leaf_t is not None and leaf_w is not None
    n_nodes = feat.size
    for k in ("nodes_modes", "nodes_splits", "nodes_truenodeids", "nodes_trueleafs", "nodes_falsenodeids",
              "nodes_falseleafs"):
        if req[k].size != n_nodes:  # type: ignore[union-attr]
            raise OpRuntimeError(f"TreeEnsemble: {k} has {req[k].size} entries, nodes_featureids {n_nodes}")  # type: ignore[union-attr]
    if leaf_t.size != leaf_w.size:
        raise OpRuntimeError(f"TreeEnsemble: {leaf_t.size} leaf_targetids but {leaf_w.size} leaf_weights")
    if leaf_t.size and (leaf_t.min() < 0 or leaf_t.max() >= n_targets):
        raise OpRuntimeError(f"TreeEnsemble: leaf_targetids must lie in [0, {n_targets})")
    if n_nodes and (feat.min() < 0 or feat.max() >= x.shape[1]):
        raise OpRuntimeError(f"TreeEnsemble: nodes_featureids reach feature {feat.max()}, the input has {x.shape[1]}")
    if modes.size and (modes.min() < 0 or modes.max() > _MEMBER):
        raise OpRuntimeError(f"TreeEnsemble: nodes_modes must be in 0..6, got {sorted(set(modes.tolist()))}")
    for ids, leaf, what in ((true_ids, true_leaf, "true"), (false_ids, false_leaf, "false")):
        lim = np.where(leaf != 0, leaf_t.size, n_nodes)
        if n_nodes and ((ids < 0) | (ids >= lim)).any():
            raise OpRuntimeError(f"TreeEnsemble: a {what} branch points outside the node/leaf lists")
    tracks = _attr_array(ctx, "nodes_missing_value_tracks_true", np.int64)
    if tracks is None or tracks.size == 0:
        tracks = np.zeros(n_nodes, dtype=np.int64)
    members: dict[int, np.ndarray] = {}
    member_nodes = np.flatnonzero(modes == _MEMBER)
    if member_nodes.size:
        mv = _attr_array(ctx, "membership_values")
        if mv is None:
            raise OpRuntimeError("TreeEnsemble has BRANCH_MEMBER nodes but no membership_values")
        groups: list[list[float]] = [[]]
        for v in mv.astype(np.float64):
            if math.isnan(v):
                groups.append([])
            else:
                groups[-1].append(v)
        if groups and not groups[-1]:
            groups.pop()
        if len(groups) < member_nodes.size:
            raise OpRuntimeError(
                f"TreeEnsemble: {member_nodes.size} BRANCH_MEMBER nodes but membership_values holds {len(groups)} sets"
            )
        for m_idx, g in zip(member_nodes.tolist(), groups):
            members[m_idx] = np.asarray(g, dtype=x.dtype)
    thr = splits.astype(x.dtype)
    agg = int(ctx.attr("aggregate_function", 1))
    if agg not in (0, 1, 2, 3):
        raise OpRuntimeError(f"TreeEnsemble: aggregate_function must be 0..3, got {agg}")
    n = x.shape[0]
    total = np.zeros((n, n_targets), dtype=np.float64)
    if agg == 2:
        total[:] = np.inf
    elif agg == 3:
        total[:] = -np.inf
    touched = np.zeros((n, n_targets), dtype=np.bool_)
    rows = np.arange(n)
    for root in roots.tolist():
        if not 0 <= root < n_nodes:
            raise OpRuntimeError(f"TreeEnsemble: tree root {root} is not a node index")
        node = np.full(n, int(root), dtype=np.int64)
        leaf = np.full(n, -1, dtype=np.int64)
        active = rows
        for _ in range(n_nodes + 1):
            if active.size == 0:
                break
            nd = node[active]
            v = x[active, feat[nd]]
            th = thr[nd]
            md = modes[nd]
            cond = np.select(
                [md == _LEQ, md == _LT, md == _GTE, md == _GT, md == _EQ, md == _NEQ],
                [v <= th, v < th, v >= th, v > th, v == th, v != th],
                False,
            )
            for m_node in np.unique(nd[md == _MEMBER]):
                sel = nd == m_node
                cond[sel] = np.isin(v[sel], members[int(m_node)])
            cond = np.where(np.isnan(v) & (tracks[nd] != 0), True, cond) if x.dtype.kind == "f" else cond
            nxt = np.where(cond, true_ids[nd], false_ids[nd])
            is_leaf = np.where(cond, true_leaf[nd], false_leaf[nd]) != 0
            leaf[active[is_leaf]] = nxt[is_leaf]
            node[active] = nxt
            active = active[~is_leaf]
        else:
            raise OpRuntimeError(f"TreeEnsemble: the tree rooted at node {root} has a cycle")
        tgt = leaf_t[leaf]
        w = leaf_w[leaf].astype(np.float64)
        touched[rows, tgt] = True
        if agg in (0, 1):
            np.add.at(total, (rows, tgt), w)
        elif agg == 2:
            np.minimum.at(total, (rows, tgt), w)
        else:
            np.maximum.at(total, (rows, tgt), w)
    if agg == 0 and roots.size:
        total /= roots.size
    total[~touched] = 0.0
    return post_transform(total.astype(x.dtype), int(ctx.attr("post_transform", 0)))


# -- simple transforms ------------------------------------------------------------------------------------

def _float_like_input(ctx: InferContext) -> list[Type]:
    x = tensor_input(ctx, 0)
    return [TensorType(DType.FLOAT, x.shape if x is not None else None)]


def _feature_param(values: list[float] | None, x: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(values if values is not None else [], dtype=np.float32)
    f = x.shape[-1] if x.ndim else 1
    if a.size not in (1, f):
        raise OpRuntimeError(f"{what} has {a.size} entries; it needs 1 or one per feature ({f})")
    return a


@register("Scaler", Dynamism.ISDOS, domain=DOMAIN, infer=_float_like_input, family=ML)
def scaler(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    offset = _feature_param(ctx.attr("offset", [0.0]), x, "Scaler offset")
    scale = _feature_param(ctx.attr("scale", [1.0]), x, "Scaler scale")
    return ((x.astype(np.float32) - offset) * scale).astype(np.float32)


@register("Normalizer", Dynamism.ISDOS, domain=DOMAIN, infer=_float_like_input, family=ML)
def normalizer(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    norm = str(ctx.attr("norm", "MAX")).upper()
    if x.ndim not in (1, 2):
        raise OpRuntimeError(f"Normalizer takes a [C] or [N, C] input, got shape {x.shape}")
    v = x.astype(np.float64)
    if norm == "MAX":
        d = v.max(axis=-1, keepdims=True) if v.shape[-1] else np.ones(v.shape[:-1] + (1,))
    elif norm == "L1":
        d = np.abs(v).sum(axis=-1, keepdims=True)
    elif norm == "L2":
        d = np.sqrt((v * v).sum(axis=-1, keepdims=True))
    else:
        raise OpRuntimeError(f"Normalizer: norm must be MAX, L1 or L2, got {norm!r}")
    safe = np.where(d == 0, 1.0, d)
    return (v / safe).astype(np.float32)


@register("Imputer", Dynamism.ISDOS, domain=DOMAIN, infer=same_as_input, family=ML)
def imputer(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    if x.dtype.kind == "f":
        imputed = ctx.attr("imputed_value_floats")
        replaced: float = float(ctx.attr("replaced_value_float", 0.0))
    else:
        imputed = ctx.attr("imputed_value_int64s")
        replaced = int(ctx.attr("replaced_value_int64", 0))
    if not imputed:
        raise OpRuntimeError(f"Imputer on a {x.dtype} input needs the imputed_value_{'floats' if x.dtype.kind == 'f' else 'int64s'} attribute")
    vals = _feature_param(imputed, x, "Imputer imputed values").astype(x.dtype)
    hit = np.isnan(x) if x.dtype.kind == "f" and math.isnan(replaced) else x == replaced
    return np.where(hit, np.broadcast_to(vals, x.shape) if x.ndim else vals.reshape(()), x).astype(x.dtype)


def _onehot_infer(ctx: InferContext) -> list[Type]:
    x = tensor_input(ctx, 0)
    cats = ctx.attr("cats_strings") or ctx.attr("cats_int64s") or []
    if x is None or x.shape is None:
        return [TensorType(DType.FLOAT, None)]
    return [TensorType(DType.FLOAT, (*x.shape, len(cats)))]


@register("OneHotEncoder", Dynamism.ISDOS, domain=DOMAIN, infer=_onehot_infer, family=ML)
def one_hot_encoder(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    zeros = bool(ctx.attr("zeros", 1))
    if x.dtype == object:
        cats: list[Any] = [str(s) for s in ctx.attr("cats_strings") or []]
        keys: list[Any] = [str(s) for s in x.reshape(-1)]
    else:
        cats = [int(v) for v in ctx.attr("cats_int64s") or []]
        keys = [int(v) for v in x.reshape(-1).astype(np.int64)]
    if not cats:
        raise OpRuntimeError(f"OneHotEncoder on a {x.dtype} input needs cats_{'strings' if x.dtype == object else 'int64s'}")
    pos = {c: i for i, c in enumerate(cats)}
    out = np.zeros((len(keys), len(cats)), dtype=np.float32)
    for r, k in enumerate(keys):
        i = pos.get(k)
        if i is None:
            if not zeros:
                raise OpRuntimeError(f"OneHotEncoder: value {k!r} is not a category and zeros=0")
            continue
        out[r, i] = 1.0
    return out.reshape(*x.shape, len(cats))


def _linreg_infer(ctx: InferContext) -> list[Type]:
    x = tensor_input(ctx, 0)
    t = int(ctx.attr("targets", 1))
    if x is None or x.shape is None:
        return [TensorType(DType.FLOAT, None)]
    n: Dim = x.shape[0] if len(x.shape) == 2 else 1
    return [TensorType(DType.FLOAT, (n, t))]


@register("LinearRegressor", Dynamism.ISDOS, domain=DOMAIN, infer=_linreg_infer, family=ML)
def linear_regressor(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    t = int(ctx.attr("targets", 1))
    v = x.astype(np.float32).reshape(1, -1) if x.ndim == 1 else x.astype(np.float32)
    if v.ndim != 2:
        raise OpRuntimeError(f"LinearRegressor takes a [C] or [N, C] input, got shape {x.shape}")
    coef = np.asarray(ctx.attr("coefficients") or [], dtype=np.float32)
    if coef.size != t * v.shape[1]:
        raise OpRuntimeError(f"LinearRegressor: {coef.size} coefficients for {t} target(s) x {v.shape[1]} features")
    y = v @ coef.reshape(t, v.shape[1]).T
    inter = ctx.attr("intercepts")
    if inter:
        b = np.asarray(inter, dtype=np.float32)
        if b.size != t:
            raise OpRuntimeError(f"LinearRegressor: {b.size} intercepts for {t} target(s)")
        y = y + b
    return post_transform(y.astype(np.float32), str(ctx.attr("post_transform", "NONE")))
