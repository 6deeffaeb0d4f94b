"""The builtin functions of the kernel language: one table, one row per function.

Each row gives the arity, how argument types combine (``FLOAT``: arguments are
converted to a float type, at least float32; ``NUMERIC``: the common type of the
arguments, integers included), and the C text for float32, float64 and integer
arguments.  ``{0}``, ``{1}`` are the arguments; ``{T}`` is ``i32`` or ``i64``.
``libm`` names the C math function whose SIMD variant (glibc's libmvec) the
vectoriser may call, when the toolchain has one and the row's C text calls it
(float32 ``exp`` and ``tanh`` use inline code instead: faster than libmvec).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.Enum):
    FLOAT = "float"
    NUMERIC = "numeric"


@dataclass(frozen=True, slots=True)
class Builtin:
    name: str
    arity: int
    kind: Kind
    f32: str
    f64: str
    integer: str | None = None
    libm: str | None = None


def _libm1(name: str) -> Builtin:
    return Builtin(name, 1, Kind.FLOAT, f"{name}f({{0}})", f"{name}({{0}})", libm=name)


def _libm2(name: str, vector: bool = True) -> Builtin:
    return Builtin(
        name, 2, Kind.FLOAT, f"{name}f({{0}}, {{1}})", f"{name}({{0}}, {{1}})", libm=name if vector else None
    )


_VECTOR_UNARY = (
    "exp",
    "exp2",
    "expm1",
    "log",
    "log2",
    "log10",
    "log1p",
    "cbrt",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "sinh",
    "cosh",
    "tanh",
    "asinh",
    "acosh",
    "atanh",
    "erf",
    "erfc",
)

BUILTINS: dict[str, Builtin] = {
    **{n: _libm1(n) for n in _VECTOR_UNARY},
    "exp": Builtin("exp", 1, Kind.FLOAT, "pl_expf({0})", "exp({0})", libm="exp"),
    "tanh": Builtin("tanh", 1, Kind.FLOAT, "pl_tanhf({0})", "tanh({0})", libm="tanh"),
    "sqrt": Builtin("sqrt", 1, Kind.FLOAT, "sqrtf({0})", "sqrt({0})"),
    "rsqrt": Builtin("rsqrt", 1, Kind.FLOAT, "(1.0f / sqrtf({0}))", "(1.0 / sqrt({0}))"),
    "sigmoid": Builtin("sigmoid", 1, Kind.FLOAT, "pl_sigmoidf({0})", "pl_sigmoid({0})"),
    "floor": Builtin("floor", 1, Kind.FLOAT, "floorf({0})", "floor({0})"),
    "ceil": Builtin("ceil", 1, Kind.FLOAT, "ceilf({0})", "ceil({0})"),
    "round": Builtin("round", 1, Kind.FLOAT, "rintf({0})", "rint({0})"),  # half to even, as NumPy
    "trunc": Builtin("trunc", 1, Kind.FLOAT, "truncf({0})", "trunc({0})"),
    "pow": _libm2("pow"),
    "atan2": _libm2("atan2"),
    "hypot": _libm2("hypot"),
    "fmax": Builtin("fmax", 2, Kind.FLOAT, "pl_fmaxf({0}, {1})", "pl_fmax({0}, {1})"),
    "fmin": Builtin("fmin", 2, Kind.FLOAT, "pl_fminf({0}, {1})", "pl_fmin({0}, {1})"),
    "fmod": _libm2("fmod", vector=False),
    "copysign": _libm2("copysign", vector=False),
    "abs": Builtin("abs", 1, Kind.NUMERIC, "fabsf({0})", "fabs({0})", "pl_abs_{T}({0})"),
    "min": Builtin("min", 2, Kind.NUMERIC, "pl_min_f32({0}, {1})", "pl_min_f64({0}, {1})", "pl_min_{T}({0}, {1})"),
    "max": Builtin("max", 2, Kind.NUMERIC, "pl_max_f32({0}, {1})", "pl_max_f64({0}, {1})", "pl_max_{T}({0}, {1})"),
    "sign": Builtin("sign", 1, Kind.NUMERIC, "pl_signf({0})", "pl_sign({0})", "pl_sign_{T}({0})"),
}

C_HELPERS = """\
/* exp and tanh for float32 are straight-line arithmetic (no branch, no table, no call), so a loop using
   them vectorises in full; both were checked against double-precision exp/tanh on every float32. */
static inline float pl_expf(float x) {
  /* exp(x) = 2^n exp(r), n = rint(x / ln2): adding 1.5 * 2^23 rounds to an integer and leaves n in the
     low mantissa bits; r = x - n ln2 (Cody-Waite, two constants); exp(r) by a degree-6 minimax
     polynomial on [-ln2/2, ln2/2]; 2^n applied as two factors so subnormal results are right.
     Error < 0.9 ulp.  Overflow gives inf, underflow 0; NaN compares false and passes through. */
  union { float f; int32_t i; } t = { fmaf(x, 1.44269504088896341f, 12582912.0f) };
  float n = t.f - 12582912.0f;
  float r = fmaf(n, -0.693145751953125f, x);
  r = fmaf(n, -1.42860682030941723e-06f, r);
  float p = 1.38145778e-03f;
  p = fmaf(p, r, 8.36871564e-03f);
  p = fmaf(p, r, 4.16683890e-02f);
  p = fmaf(p, r, 1.66665211e-01f);
  p = fmaf(p, r, 4.99999940e-01f);
  p = fmaf(p, r, 1.0f);
  p = fmaf(p, r, 1.0f);
  int32_t ni = t.i - 0x4B400000, h = ni >> 1;
  union { int32_t i; float f; } s1 = { (h + 127) << 23 }, s2 = { (ni - h + 127) << 23 };
  float y = p * s1.f * s2.f;
  y = x > 100.0f ? INFINITY : y;
  return x < -110.0f ? 0.0f : y;
}
static inline float pl_tanhf(float x) {
  /* tanh|x| = -m / (m + 2) with m = expm1(-2|x|), m from the reduction of pl_expf as
     2^n (r + r^2 q(r)) + (2^n - 1), q a degree-4 minimax polynomial, so small |x| keeps full relative
     accuracy.  Error < 2.5 ulp (glibc's tanhf: 2.2).  |x| > 10 gives +-1; NaN passes through. */
  float u = -2.0f * fabsf(x);
  u = u < -20.0f ? -20.0f : u;
  union { float f; int32_t i; } t = { fmaf(u, 1.44269504088896341f, 12582912.0f) };
  float n = t.f - 12582912.0f;
  float r = fmaf(n, -0.693145751953125f, u);
  r = fmaf(n, -1.42860682030941723e-06f, r);
  float q = 1.38825143e-03f;
  q = fmaf(q, r, 8.36651959e-03f);
  q = fmaf(q, r, 4.16672006e-02f);
  q = fmaf(q, r, 1.66665435e-01f);
  q = fmaf(q, r, 4.99999970e-01f);
  float pr = fmaf(q, r * r, r);
  union { int32_t i; float f; } s = { (t.i - 0x4B400000 + 127) << 23 };
  float m = fmaf(s.f, pr, s.f - 1.0f);
  return copysignf(m / (-2.0f - m), x);
}
/* sigmoid from e = exp(-|x|) <= 1: 1 / (1 + e) or e / (1 + e); accurate also where the result is tiny */
static inline float pl_sigmoidf(float x) { float e = pl_expf(-fabsf(x)); return (x < 0.0f ? e : 1.0f) / (1.0f + e); }
static inline double pl_sigmoid(double x) { double e = exp(-fabs(x)); return (x < 0.0 ? e : 1.0) / (1.0 + e); }
static inline float pl_signf(float x) { return (float)((x > 0.0f) - (x < 0.0f)); }
static inline double pl_sign(double x) { return (double)((x > 0.0) - (x < 0.0)); }
#define PL_INT_HELPERS(T, S) \\
  static inline T pl_abs_##S(T x) { return x < 0 ? -x : x; } \\
  static inline T pl_min_##S(T a, T b) { return a < b ? a : b; } \\
  static inline T pl_max_##S(T a, T b) { return a > b ? a : b; } \\
  static inline T pl_sign_##S(T x) { return (T)((x > 0) - (x < 0)); } \\
  static inline T pl_floordiv_##S(T a, T b) { if (b == 0) return 0; if (b == -1) return (T)(0ULL - (unsigned long long)a); T q = a / b; return (q * b != a && ((a < 0) != (b < 0))) ? q - 1 : q; } \\
  static inline T pl_floormod_##S(T a, T b) { if (b == 0 || b == -1) return 0; T r = a % b; return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r; }
PL_INT_HELPERS(int32_t, i32)
PL_INT_HELPERS(int64_t, i64)
/* min/max propagate NaN (NumPy's minimum/maximum, min=/max= as np.min/np.max); fmin/fmax ignore it (C's
   fmin/fmax, NumPy's fmin/fmax).  Written as selects, they vectorise where libm's fminf would be a call. */
static inline float pl_min_f32(float a, float b) { return (b < a || b != b) ? b : a; }
static inline float pl_max_f32(float a, float b) { return (b > a || b != b) ? b : a; }
static inline double pl_min_f64(double a, double b) { return (b < a || b != b) ? b : a; }
static inline double pl_max_f64(double a, double b) { return (b > a || b != b) ? b : a; }
static inline float pl_fminf(float a, float b) { return (b < a || a != a) ? b : a; }
static inline float pl_fmaxf(float a, float b) { return (b > a || a != a) ? b : a; }
static inline double pl_fmin(double a, double b) { return (b < a || a != a) ? b : a; }
static inline double pl_fmax(double a, double b) { return (b > a || a != a) ? b : a; }
static inline float pl_floormodf(float a, float b) { float r = fmodf(a, b); return (r != 0.0f && ((r < 0.0f) != (b < 0.0f))) ? r + b : r; }
static inline double pl_floormod(double a, double b) { double r = fmod(a, b); return (r != 0.0 && ((r < 0.0) != (b < 0.0))) ? r + b : r; }
"""
"""C definitions every kernel's prelude includes.  Integer division by zero gives 0, as in NumPy."""


def builtin_names() -> str:
    """The builtins as a comma-separated list (for error messages)."""
    return ", ".join(sorted(BUILTINS))
