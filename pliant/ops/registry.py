"""The operator registry: every op is defined once, here-registered, by family.

An ``OpDef`` holds everything pliant knows about one operator:

* its **schema** (inputs, outputs, attributes with defaults, type constraints),
  read from ONNX's own operator schemas for the model's opset, or given by hand
  for pliant's own ops;
* its **dynamism class** (SoD²): ISDO, ISDOS, ISVDOS or EDO;
* its forward **shape rule** ``infer`` (None: ONNX's shape inference is used);
* its **symbolic value rule** ``value``: for ops that compute small integer
  tensors (Shape, Gather, Concat, Add...), the output's elements as dims
  (ints or symbolic expressions) from the inputs' (see ``pliant.ops.symvalue``);
* its **backward shape rule** ``backward``: the dim equalities the op imposes
  on its inputs and outputs (a MatMul's contraction dims are equal);
* its NumPy **reference kernel**, which defines what the op means;
* seams for the later stages: a gradient and a lowering.

Op modules register with the ``register`` decorator::

    @register("Relu", Dynamism.ISDOS, family=UNARY, infer=same_as_input)
    def relu(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0).astype(x.dtype)

A kernel receives the op's runtime inputs positionally (None for an omitted
optional input; a list for a sequence) and returns one value, or a tuple of
values for an op with several outputs.
"""

from __future__ import annotations

import base64
import enum
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import onnx.defs

from pliant.errors import UnsupportedOpError
from pliant.ir.dims import Dim
from pliant.ir.types import Type

if TYPE_CHECKING:
    from pliant.ir.core import AttrValue, Op, Region


class Dynamism(enum.Enum):
    """How much of an op's output is known before it runs (SoD² classes)."""

    ISDO = "ISDO"
    """Input-shape-determined output: the output *value* follows from input shapes (Shape, Size)."""
    ISDOS = "ISDOS"
    """Input-shape-determined output shape (Add, Conv, MatMul)."""
    ISVDOS = "ISVDOS"
    """Output shape needs input *values* (Reshape, Expand, Range, ConstantOfShape)."""
    EDO = "EDO"
    """Execution-determined output: known only after running (NonZero, If, Loop)."""


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One input or output of a schema."""

    name: str
    optional: bool = False
    variadic: bool = False


@dataclass(frozen=True, slots=True)
class Schema:
    """An operator's signature for one opset version."""

    name: str
    domain: str
    since_version: int
    inputs: tuple[ParamSpec, ...]
    outputs: tuple[ParamSpec, ...]
    attrs: dict[str, AttrValue | None] = field(default_factory=dict)
    """Attribute name -> default value (None: required or no default)."""
    required_attrs: frozenset[str] = frozenset()

    def arity_ok(self, n: int, params: tuple[ParamSpec, ...]) -> bool:
        if params and params[-1].variadic:
            return n >= len(params) - 1
        required = sum(1 for p in params if not p.optional)
        return required <= n <= len(params) or (n == 0 and required == 0)


InferFn = Callable[["InferContext"], list[Type]]
ValueFn = Callable[["InferContext"], list["np.ndarray | None"]]
"""Output symbolic values: object arrays of dims (int, Sym or None), None where not known."""
BackwardFn = Callable[["InferContext", list[Type]], list[tuple[Dim, Dim]]]
"""Given the input types (in the context) and the result types: pairs of dims that must be equal."""
KernelFn = Callable[..., Any]


@dataclass(frozen=True)
class OpDef:
    """Everything about one operator, in one place."""

    name: str
    domain: str
    dynamism: Dynamism
    kernel: KernelFn
    infer: InferFn | None = None
    family: frozenset[str] = frozenset()
    note: str = ""
    """Where the dynamism class depends on attributes or constant inputs, say how."""
    schema_override: Schema | None = None
    verify: Callable[[Op], list[str]] | None = None
    """Op-specific structural checks (region arity...): returns problems, empty if none."""
    value: ValueFn | None = None
    backward: BackwardFn | None = None
    gradient: Callable[..., Any] | None = None
    lowering: Callable[..., Any] | None = None

    @property
    def qualname(self) -> str:
        return f"{self.domain}.{self.name}" if self.domain else self.name

    def schema(self, opset: int) -> Schema:
        if self.schema_override is not None:
            return self.schema_override
        return onnx_schema(self.name, self.domain, opset)


_REGISTRY: dict[tuple[str, str], OpDef] = {}
FAMILIES: dict[str, set[str]] = {}
"""Family name -> qualified names of its ops ('unary', 'binary', 'reduce', 'control', ...)."""


def register(
    name: str,
    dynamism: Dynamism,
    *,
    domain: str = "",
    infer: InferFn | None = None,
    family: str | Sequence[str] = (),
    note: str = "",
    schema: Schema | None = None,
    verify: Callable[[Op], list[str]] | None = None,
    value: ValueFn | None = None,
    backward: BackwardFn | None = None,
) -> Callable[[KernelFn], KernelFn]:
    """Register ``kernel`` as the reference kernel of op ``name``; see the module doc."""
    fams = (family,) if isinstance(family, str) else tuple(family)

    def deco(kernel: KernelFn) -> KernelFn:
        key = (domain, name)
        if key in _REGISTRY:
            raise ValueError(f"op {name} in domain '{domain}' is registered twice")
        d = OpDef(name, domain, dynamism, kernel, infer, frozenset(fams), note, schema, verify, value, backward)
        _REGISTRY[key] = d
        for f in fams:
            FAMILIES.setdefault(f, set()).add(d.qualname)
        return kernel

    return deco


def lookup(name: str, domain: str = "") -> OpDef | None:
    """The definition of op ``name`` in ``domain``, or None."""
    _load_all()
    if domain == "ai.onnx":
        domain = ""
    return _REGISTRY.get((domain, name))


def get(name: str, domain: str = "") -> OpDef:
    d = lookup(name, domain)
    if d is None:
        where = f" in domain '{domain}'" if domain else ""
        raise UnsupportedOpError(f"pliant does not define op {name}{where}")
    return d


def all_ops() -> list[OpDef]:
    _load_all()
    return sorted(_REGISTRY.values(), key=lambda d: (d.domain, d.name))


@functools.cache
def _load_all() -> None:
    # NOTE: importing the families registers their ops; kept lazy so that
    # `pliant.ir` can be used without pulling every kernel in.
    import pliant.ops  # noqa: F401


@functools.cache
def onnx_schema(name: str, domain: str, opset: int) -> Schema:
    """The schema ONNX defines for ``name`` at ``opset`` (the newest version <= opset).

    Read from the table shipped with pliant (``pliant.ops.schema_table``) where it covers the question, so that
    loading a model does not build ONNX's whole schema registry; from ``onnx.defs`` otherwise (through the
    table's own encoding, so both are read by the same code).
    """
    from pliant.frontends.onnx_attrs import attr_from_onnx
    from pliant.ops.schema_table import covered, schema_entry

    entry = covered(name, domain, opset)
    if entry is None:
        try:
            entry = schema_entry(onnx.defs.get_schema(name, opset, domain))
        except onnx.defs.SchemaError:
            entry = False
    if entry is False:
        raise UnsupportedOpError(f"ONNX defines no op {name} in domain '{domain or 'ai.onnx'}' at opset {opset}")
    since, ins, outs, defaults, required = entry
    attrs: dict[str, AttrValue | None] = {
        k: attr_from_onnx(onnx.AttributeProto.FromString(base64.b64decode(v))) if v is not None else None
        for k, v in defaults.items()
    }

    def params(ps: list[str]) -> tuple[ParamSpec, ...]:
        return tuple(ParamSpec(p.rstrip("?*"), p.endswith("?"), p.endswith("*")) for p in ps)

    return Schema(name, domain, int(since), params(ins), params(outs), attrs, frozenset(required))


class KernelContext:
    """What a reference kernel may ask about the op it runs."""

    __slots__ = ("attrs", "interp", "num_outputs", "op", "opset")

    def __init__(self, op: Op, attrs: dict[str, Any], opset: int, interp: Any) -> None:
        self.op = op
        self.attrs = attrs
        self.opset = opset
        self.interp = interp
        self.num_outputs = len(op.results)

    def attr(self, name: str, default: Any = None) -> Any:
        v = self.attrs.get(name)
        return default if v is None else v

    @property
    def output_types(self) -> list[Type]:
        return [r.type for r in self.op.results]

    def run_region(self, key: str, args: Sequence[Any]) -> list[Any]:
        """Run the op's region ``key`` with block arguments ``args``; return its outputs."""
        return self.interp.run_block(self.op.regions[key].block, list(args))

    def region(self, key: str) -> Region:
        return self.op.regions[key]


class InferContext:
    """What a shape rule may ask: input types, attributes, constant inputs."""

    __slots__ = ("attrs", "consts", "domain", "input_types", "module", "name", "num_outputs", "opset", "regions",
                 "values")

    def __init__(
        self,
        name: str,
        domain: str,
        input_types: Sequence[Type | None],
        attrs: dict[str, Any],
        opset: int,
        num_outputs: int,
        consts: Sequence[np.ndarray | None] | None = None,
        regions: dict[str, Region] | None = None,
        module: Any = None,
        values: Sequence[np.ndarray | None] | None = None,
    ) -> None:
        self.name = name
        self.domain = domain
        self.input_types = list(input_types)
        self.attrs = attrs
        self.opset = opset
        self.num_outputs = num_outputs
        self.consts = list(consts) if consts is not None else [None] * len(self.input_types)
        self.regions = regions or {}
        self.module = module
        self.values = list(values) if values is not None else [None] * len(self.input_types)

    def attr(self, name: str, default: Any = None) -> Any:
        v = self.attrs.get(name)
        return default if v is None else v

    def const(self, i: int) -> np.ndarray | None:
        """The value of input ``i`` if it is a constant, else None."""
        return self.consts[i] if i < len(self.consts) else None

    def input(self, i: int) -> Type | None:
        return self.input_types[i] if i < len(self.input_types) else None

    def value(self, i: int) -> np.ndarray | None:
        """Input ``i``'s elements as an object array of dims, when known.

        Known means: a small integer (or boolean) constant, or a value the
        shape analysis tracked symbolically (``Shape(x)`` is ``[N, L]``).
        Elements may be None (that element unknown).
        """
        v = self.values[i] if i < len(self.values) else None
        if v is not None:
            return v
        from pliant.ops.symvalue import from_constant

        return from_constant(self.const(i))

    def dims(self, i: int) -> list[Dim] | None:
        """Input ``i`` flattened to a list of dims (a shape tensor), when known."""
        v = self.value(i)
        return None if v is None else list(v.reshape(-1))
