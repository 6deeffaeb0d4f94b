"""String ops: StringConcat, StringNormalizer, StringSplit, RegexFullMatch, TfIdfVectorizer.

String tensors are NumPy object arrays of Python ``str``.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import numpy as np

from pliant.errors import OpRuntimeError, ShapeInferenceError
from pliant.ir.dims import Dim
from pliant.ir.dtypes import DType
from pliant.ir.types import TensorType, Type
from pliant.ops.infer import broadcast, tensor_input
from pliant.ops.registry import Dynamism, InferContext, KernelContext, register

STRING = "string"


def _strings(x: np.ndarray, op: str) -> np.ndarray:
    if x.dtype != object:
        if x.dtype.kind in "US":
            return x.astype(object)
        raise OpRuntimeError(f"{op} expects a string tensor, got {x.dtype}")
    return x


# -- StringConcat -----------------------------------------------------------------

@register("StringConcat", Dynamism.ISDOS, infer=broadcast, family=STRING)
def string_concat(ctx: KernelContext, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x, y = _strings(x, "StringConcat"), _strings(y, "StringConcat")
    try:
        shape = np.broadcast_shapes(x.shape, y.shape)
    except ValueError:
        raise OpRuntimeError(f"StringConcat: shapes {x.shape} and {y.shape} do not broadcast") from None
    out = np.empty(shape, dtype=object)
    xb, yb = np.broadcast_to(x, shape), np.broadcast_to(y, shape)
    for idx in np.ndindex(*shape):
        out[idx] = str(xb[idx]) + str(yb[idx])
    return out


# -- RegexFullMatch -----------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def _compile(pattern: str) -> re.Pattern[str]:
    # NOTE: RE2's \w, \d, \s and \b are ASCII-only, as Python's are under re.ASCII.
    try:
        return re.compile(pattern, re.ASCII)
    except re.error as e:
        raise OpRuntimeError(f"RegexFullMatch: pattern {pattern!r} is not a regex pliant can run: {e}") from None


def _bool_like_input(ctx: InferContext) -> list[Type]:
    t = tensor_input(ctx, 0)
    return [TensorType(DType.BOOL, t.shape if t is not None else None)]


@register("RegexFullMatch", Dynamism.ISDOS, infer=_bool_like_input, family=STRING)
def regex_full_match(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    pattern = ctx.attr("pattern")
    if pattern is None:
        raise OpRuntimeError("RegexFullMatch needs the 'pattern' attribute")
    rx = _compile(str(pattern))
    x = _strings(x, "RegexFullMatch")
    out = np.zeros(x.shape, dtype=np.bool_)
    for idx in np.ndindex(*x.shape):
        out[idx] = rx.fullmatch(str(x[idx])) is not None
    return out


# -- StringSplit -------------------------------------------------------------------------

def _split_infer(ctx: InferContext) -> list[Type]:
    t = tensor_input(ctx, 0)
    if t is None or t.shape is None:
        return [TensorType(DType.STRING, None), TensorType(DType.INT64, None)]
    return [TensorType(DType.STRING, (*t.shape, None)), TensorType(DType.INT64, t.shape)]


@register("StringSplit", Dynamism.EDO, infer=_split_infer, family=STRING,
          note="the padded length of the last axis is the most substrings any element yields")
def string_split(ctx: KernelContext, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = _strings(x, "StringSplit")
    delim = ctx.attr("delimiter", "") or None
    maxsplit = ctx.attr("maxsplit")
    ms = -1 if maxsplit is None else int(maxsplit)
    if ms < -1:
        raise OpRuntimeError(f"StringSplit: maxsplit must be non-negative, got {ms}")
    parts: dict[tuple[int, ...], list[str]] = {}
    lengths = np.zeros(x.shape, dtype=np.int64)
    for idx in np.ndindex(*x.shape):
        p = str(x[idx]).split(delim, ms)
        parts[idx] = p
        lengths[idx] = len(p)
    width = int(lengths.max()) if lengths.size else 0
    out = np.full((*x.shape, width), "", dtype=object)
    for idx, p in parts.items():
        out[idx][: len(p)] = p
    return out, lengths


# -- StringNormalizer ------------------------------------------------------------------------

def _normalizer_infer(ctx: InferContext) -> list[Type]:
    t = tensor_input(ctx, 0)
    if t is None or t.shape is None:
        return [TensorType(DType.STRING, None)]
    if len(t.shape) not in (1, 2) or (len(t.shape) == 2 and t.shape[0] not in (1, None)):
        raise ShapeInferenceError(f"StringNormalizer accepts [C] and [1, C] tensors, got {t}")
    stopwords = ctx.attr("stopwords") or []
    last: Dim = t.shape[-1] if not stopwords else None
    return [TensorType(DType.STRING, (*t.shape[:-1], last))]


@register("StringNormalizer", Dynamism.EDO, infer=_normalizer_infer, family=STRING,
          note="ISDOS when there are no stopwords; stopwords remove elements")
def string_normalizer(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    x = _strings(x, "StringNormalizer")
    if x.ndim not in (1, 2) or (x.ndim == 2 and x.shape[0] != 1):
        raise OpRuntimeError(f"StringNormalizer accepts [C] and [1, C] tensors, got shape {x.shape}")
    action = str(ctx.attr("case_change_action", "NONE")).upper()
    if action not in ("NONE", "LOWER", "UPPER"):
        raise OpRuntimeError(f"StringNormalizer: case_change_action must be NONE, LOWER or UPPER, got {action!r}")
    sensitive = bool(ctx.attr("is_case_sensitive", 0))
    stopwords = [str(s) for s in ctx.attr("stopwords") or []]
    words = [str(s) for s in x.reshape(-1)]
    if stopwords:
        if sensitive:
            stop = set(stopwords)
            words = [w for w in words if w not in stop]
        else:
            stop = {s.casefold() for s in stopwords}
            words = [w for w in words if w.casefold() not in stop]
    if action == "LOWER":
        words = [w.lower() for w in words]
    elif action == "UPPER":
        words = [w.upper() for w in words]
    if not words:
        words = [""]
    out = np.array(words, dtype=object)
    return out.reshape(1, -1) if x.ndim == 2 else out


# -- TfIdfVectorizer -------------------------------------------------------------------------------

def _tfidf_width(ctx: InferContext | KernelContext) -> int:
    idx = ctx.attr("ngram_indexes") or []
    return int(max(idx)) + 1 if idx else 0


def _tfidf_infer(ctx: InferContext) -> list[Type]:
    t = tensor_input(ctx, 0)
    w = _tfidf_width(ctx)
    if t is None or t.shape is None:
        return [TensorType(DType.FLOAT, None)]
    if len(t.shape) == 1:
        return [TensorType(DType.FLOAT, (w,))]
    if len(t.shape) == 2:
        return [TensorType(DType.FLOAT, (t.shape[0], w))]
    raise ShapeInferenceError(f"TfIdfVectorizer takes a [C] or [N, C] input, got {t}")


def _pool(ctx: KernelContext) -> tuple[dict[tuple[Any, ...], int], int, bool]:
    """The pool's n-grams -> their position among them; how many there are; whether they are strings."""
    strings = ctx.attr("pool_strings")
    ints = ctx.attr("pool_int64s")
    if (strings is None) == (ints is None):
        raise OpRuntimeError("TfIdfVectorizer needs exactly one of pool_strings and pool_int64s")
    pool: list[Any] = [str(s) for s in strings] if strings is not None else [int(v) for v in ints]
    counts = [int(c) for c in ctx.attr("ngram_counts") or []]
    ngrams: dict[tuple[Any, ...], int] = {}
    k = 0
    for level, start in enumerate(counts):
        n = level + 1
        end = counts[level + 1] if level + 1 < len(counts) else len(pool)
        if not 0 <= start <= end <= len(pool) or (end - start) % n:
            raise OpRuntimeError(
                f"TfIdfVectorizer: ngram_counts {counts} do not split the pool of {len(pool)} items into {n}-grams"
            )
        for i in range(start, end, n):
            ngrams.setdefault(tuple(pool[i : i + n]), k)
            k += 1
    return ngrams, k, strings is not None


@register("TfIdfVectorizer", Dynamism.ISDOS, infer=_tfidf_infer, family=STRING)
def tfidf_vectorizer(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    ngrams, total, is_str = _pool(ctx)
    indexes = [int(v) for v in ctx.attr("ngram_indexes") or []]
    if len(indexes) != total or any(i < 0 for i in indexes):
        raise OpRuntimeError(
            f"TfIdfVectorizer: ngram_indexes must give a non-negative output index for each of the pool's "
            f"{total} n-grams, got {len(indexes)} entries"
        )
    width = _tfidf_width(ctx)
    mode = str(ctx.attr("mode", "TF"))
    if mode not in ("TF", "IDF", "TFIDF"):
        raise OpRuntimeError(f"TfIdfVectorizer: mode must be TF, IDF or TFIDF, got {mode!r}")
    weights = ctx.attr("weights")
    w = np.asarray(weights, dtype=np.float32) if weights is not None else np.ones(len(indexes), np.float32)
    if w.shape != (len(indexes),):
        raise OpRuntimeError(f"TfIdfVectorizer: {w.size} weights for {len(indexes)} n-grams")
    lo, hi = int(ctx.attr("min_gram_length")), int(ctx.attr("max_gram_length"))
    max_skip = int(ctx.attr("max_skip_count", 0))
    if not 1 <= lo <= hi:
        raise OpRuntimeError(f"TfIdfVectorizer: need 1 <= min_gram_length <= max_gram_length, got {lo}, {hi}")
    if x.ndim not in (1, 2):
        raise OpRuntimeError(f"TfIdfVectorizer takes a [C] or [N, C] input, got shape {x.shape}")
    rows = x.reshape(1, -1) if x.ndim == 1 else x
    out = np.zeros((rows.shape[0], width), dtype=np.float32)
    for r, row in enumerate(rows):
        items = [str(v) for v in row] if is_str else [int(v) for v in row]
        counts = np.zeros(len(indexes), dtype=np.float32)
        c = len(items)
        for n in range(lo, hi + 1):
            for skip in range(max_skip + 1 if n > 1 else 1):
                step = skip + 1
                for start in range(c - (n - 1) * step):
                    k = ngrams.get(tuple(items[start : start + (n - 1) * step + 1 : step]))
                    if k is not None:
                        counts[k] += 1
        if mode == "IDF":
            counts = np.minimum(counts, 1) * w
        elif mode == "TFIDF":
            counts = counts * w
        for k, pos in enumerate(indexes):
            out[r, pos] = counts[k]
    return out.reshape(-1) if x.ndim == 1 else out
