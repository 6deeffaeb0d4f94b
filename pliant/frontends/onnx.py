"""ONNX front end: ``load(path_or_model) -> Module``.

Every ONNX graph becomes IR: the main graph the entry function ``main``,
initializers ``Constant`` ops, subgraphs of If/Loop/Scan/SequenceMap regions
that may read outer values, model-local functions IR functions reached by
``pliant.Call``.  ``dim_param`` names become symbols, unnamed dynamic input
dims fresh symbols (``_d1``, ``_d2``...).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from pliant.errors import ModelLoadError, UnsupportedOpError
from pliant.frontends.onnx_attrs import SymbolTable, attr_from_onnx, type_from_onnx
from pliant.ir.core import AttrValue, Block, Function, Module, Op, Region, Value
from pliant.ir.types import ANY, Type
from pliant.ops import registry
from pliant.ops.typing import infer_op_types, refine

CALL_DOMAIN = "pliant"


def load(model: str | os.PathLike[str] | bytes | onnx.ModelProto, *, verify: bool = True) -> Module:
    """Import an ONNX model (a path, serialized bytes or a ModelProto) as a verified Module.

    >>> import onnx, onnx.helper as h
    >>> g = h.make_graph([h.make_node("Relu", ["x"], ["y"])], "g",
    ...     [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N"])],
    ...     [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N"])])
    >>> print(load(h.make_model(g)).entry.output_types[0])
    f32[N]
    """
    proto, base_dir = _read(model)
    importer = _Importer(proto, base_dir)
    module = importer.run()
    if verify:
        from pliant.ir.verifier import verify_module

        verify_module(module)
    return module


def _read(model: str | os.PathLike[str] | bytes | onnx.ModelProto) -> tuple[onnx.ModelProto, str | None]:
    if isinstance(model, onnx.ModelProto):
        return model, None
    if isinstance(model, bytes):
        try:
            return onnx.load_from_string(model), None
        except (DecodeError, ValueError, RuntimeError) as e:
            raise ModelLoadError(f"cannot parse the bytes given as an ONNX model: {e}") from None
    path = os.fspath(model)
    if not os.path.exists(path):
        raise ModelLoadError(f"no such file: '{path}'")
    try:
        proto = onnx.load(path, load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError, UnicodeDecodeError) as e:
        raise ModelLoadError(
            f"'{path}' is not a readable ONNX model ({type(e).__name__}: {str(e) or 'corrupt protobuf'})"
        ) from None
    if not proto.graph.node and not proto.graph.output and not proto.opset_import:
        raise ModelLoadError(f"'{path}' is not an ONNX model: it holds no graph (is it the right file?)")
    return proto, os.path.dirname(os.path.abspath(path))


@dataclass
class _Scope:
    values: dict[str, Value]
    parent: _Scope | None

    def lookup(self, name: str) -> Value | None:
        s: _Scope | None = self
        while s is not None:
            if name in s.values:
                return s.values[name]
            s = s.parent
        return None


SUBGRAPH_OPS = {"If", "Loop", "Scan", "SequenceMap"}


class _Importer:
    def __init__(self, proto: onnx.ModelProto, base_dir: str | None) -> None:
        self.proto = proto
        self.base_dir = base_dir
        self.symbols = SymbolTable()
        self.opsets: dict[str, int] = {}
        for o in proto.opset_import:
            self.opsets["" if o.domain == "ai.onnx" else o.domain] = int(o.version)
        self.opsets.setdefault("", 1)
        self.local_functions = {(f.domain, f.name): f for f in proto.functions}
        self.module = Module(self.opsets)
        self.specialised: dict[tuple[Any, ...], str] = {}
        self.value_info: dict[str, Type] = {}

    # -- driver -----------------------------------------------------------
    def run(self) -> Module:
        self._check_supported()
        self._collect_value_info()
        g = self.proto.graph
        fn = Function("main")
        self.module.add_function(fn)
        scope = _Scope({}, None)
        inits = {t.name for t in g.initializer} | {s.values.name for s in g.sparse_initializer}
        for vi in g.input:
            if vi.name in inits:
                continue  # NOTE: an input with an initializer is treated as that constant
            t = type_from_onnx(vi.type, self.symbols, fresh_dims=True)
            scope.values[vi.name] = fn.body.add_arg(t, vi.name)
        for init in g.initializer:
            self._constant(fn.body, scope, init.name, self._tensor(init))
        for sp in g.sparse_initializer:
            from pliant.frontends.onnx_attrs import sparse_to_dense

            self._constant(fn.body, scope, sp.values.name, sparse_to_dense(sp))
        self._nodes(g, fn.body, scope, {})
        self._outputs(g, fn.body, scope)
        fn.result_names = [o.name for o in g.output]
        for k, v in (("producer", self.proto.producer_name), ("graph", g.name)):
            if v:
                self.module.metadata[k] = v
        return self.module

    def _tensor(self, t: onnx.TensorProto) -> np.ndarray:
        from pliant.frontends.onnx_attrs import tensor_from_onnx

        try:
            return tensor_from_onnx(t, self.base_dir)
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"cannot read initializer '{t.name}': {e}") from None

    def _constant(self, block: Block, scope: _Scope, name: str, value: np.ndarray) -> Value:
        from pliant.ir.dtypes import DType
        from pliant.ir.types import TensorType

        t = TensorType(DType.from_numpy(value.dtype), tuple(int(d) for d in value.shape))
        op = block.append(Op("Constant", [], [t], {"value": value}, label=name, result_names=[name]))
        scope.values[name] = op.results[0]
        return op.results[0]

    # -- checks -----------------------------------------------------------
    def _all_nodes(self) -> Iterator[tuple[onnx.NodeProto, str]]:
        def walk(g: onnx.GraphProto, where: str) -> Iterator[tuple[onnx.NodeProto, str]]:
            for n in g.node:
                yield n, where
                for a in n.attribute:
                    if a.type == onnx.AttributeProto.GRAPH:
                        yield from walk(a.g, where)
                    for sg in a.graphs:
                        yield from walk(sg, where)

        yield from walk(self.proto.graph, "")
        for f in self.proto.functions:
            for n in f.node:
                yield n, f" (in function {f.name})"

    def _check_supported(self) -> None:
        missing: dict[str, list[str]] = {}
        for n, where in self._all_nodes():
            dom = "" if n.domain == "ai.onnx" else n.domain
            if (dom, n.op_type) in self.local_functions:
                continue
            if registry.lookup(n.op_type, dom) is None:
                key = f"{dom}.{n.op_type}" if dom else n.op_type
                missing.setdefault(key, []).append((n.name or "<unnamed>") + where)
        if missing:
            lines = [f"  {op}: {len(nodes)} node(s), e.g. {', '.join(repr(x) for x in nodes[:3])}" for op, nodes in sorted(missing.items())]
            raise UnsupportedOpError(
                f"the model uses {len(missing)} operator type(s) pliant does not define:\n"
                + "\n".join(lines)
                + "\nsupported ops are listed by `pliant ops`; file an issue for the missing ones"
            )

    def _collect_value_info(self) -> None:
        """The types the model itself declares for its values (``value_info`` and outputs, subgraphs included).

        ONNX's whole-model shape inference is not run here: every op pliant defines has its own type rule
        (the rest ask ONNX node by node), and the symbolic shape analysis goes further than ONNX's. Running it
        kept about 1 MB of ONNX's inference code resident, and built ONNX's schema registry (see
        ``pliant.ops.schema_table``).
        """

        def walk(g: onnx.GraphProto) -> None:
            for vi in list(g.value_info) + list(g.output):
                if vi.type.WhichOneof("value"):
                    self.value_info[vi.name] = type_from_onnx(vi.type, self.symbols)
            for n in g.node:
                for a in n.attribute:
                    if a.type == onnx.AttributeProto.GRAPH:
                        walk(a.g)
                    for sg in a.graphs:
                        walk(sg)

        walk(self.proto.graph)

    # -- graphs -----------------------------------------------------------
    def _outputs(self, g: onnx.GraphProto, block: Block, scope: _Scope) -> None:
        for o in g.output:
            v = scope.lookup(o.name)
            if v is None:
                raise ModelLoadError(f"graph '{g.name}' output '{o.name}' is not produced by any node or input")
            if o.type.WhichOneof("value"):
                v.type = refine(v.type, type_from_onnx(o.type, self.symbols))
            block.add_output(v)

    def _nodes(self, g: onnx.GraphProto | onnx.FunctionProto, block: Block, scope: _Scope, ref_attrs: dict[str, AttrValue]) -> None:
        for node in g.node:
            self._node(node, block, scope, ref_attrs)

    def _node(self, node: onnx.NodeProto, block: Block, scope: _Scope, ref_attrs: dict[str, AttrValue]) -> None:
        label = node.name or None
        operands: list[Value | None] = []
        for name in node.input:
            if not name:
                operands.append(None)
                continue
            v = scope.lookup(name)
            if v is None:
                raise ModelLoadError(
                    f"node '{node.name or node.op_type}' ({node.op_type}) reads '{name}', which no earlier node, "
                    "input or initializer defines (is the graph topologically sorted?)"
                )
            operands.append(v)
        domain = "" if node.domain == "ai.onnx" else node.domain
        attrs: dict[str, AttrValue] = {}
        graphs: dict[str, onnx.GraphProto] = {}
        for a in node.attribute:
            if a.ref_attr_name:
                if a.ref_attr_name in ref_attrs:
                    attrs[a.name] = ref_attrs[a.ref_attr_name]
                continue
            if a.type == onnx.AttributeProto.GRAPH:
                graphs[a.name] = a.g
            elif a.type == onnx.AttributeProto.GRAPHS:
                raise ModelLoadError(f"node '{node.name}' has a list-of-graphs attribute '{a.name}', which pliant does not support")
            else:
                attrs[a.name] = attr_from_onnx(a, self.base_dir)
        if (domain, node.op_type) in self.local_functions:
            self._call(node, operands, attrs, block, scope, label)
            return
        regions = {key: self._subgraph(node, key, sg, operands, scope, ref_attrs) for key, sg in graphs.items()}
        n_out = len(node.output)
        types = infer_op_types(node.op_type, domain, operands, attrs, self.opsets.get(domain, 1), n_out, regions, self.module)
        types = [refine(t, self.value_info.get(name, ANY)) if name else t for t, name in zip(types, node.output)]
        op = Op(node.op_type, operands, types, attrs, regions, domain=domain, label=label,
                result_names=[n or None for n in node.output])
        block.append(op)
        for name, r in zip(node.output, op.results):
            if name:
                scope.values[name] = r

    def _subgraph(self, node: onnx.NodeProto, key: str, g: onnx.GraphProto, operands: list[Value | None],
                  scope: _Scope, ref_attrs: dict[str, AttrValue]) -> Region:
        from pliant.ops.control import body_arg_types

        hints = body_arg_types(node.op_type, key, operands, len(g.input), node)
        block = Block()
        sub = _Scope({}, scope)
        for i, vi in enumerate(g.input):
            t = type_from_onnx(vi.type, self.symbols) if vi.type.WhichOneof("value") else ANY
            if i < len(hints):
                t = refine(t, hints[i])
            sub.values[vi.name] = block.add_arg(t, vi.name)
        for init in g.initializer:
            self._constant(block, sub, init.name, self._tensor(init))
        self._nodes(g, block, sub, ref_attrs)
        self._outputs(g, block, sub)
        return Region(block)

    # -- functions ----------------------------------------------------------
    def _call(self, node: onnx.NodeProto, operands: list[Value | None], attrs: dict[str, AttrValue],
              block: Block, scope: _Scope, label: str | None) -> None:
        domain = "" if node.domain == "ai.onnx" else node.domain
        fproto = self.local_functions[(domain, node.op_type)]
        for a in fproto.attribute_proto:
            if a.name not in attrs:
                attrs[a.name] = attr_from_onnx(a, self.base_dir)
        arg_types = [v.type if v is not None else ANY for v in operands]
        key = (domain, node.op_type, repr(sorted((k, _attr_key(v)) for k, v in attrs.items())), tuple(str(t) for t in arg_types))
        fname = self.specialised.get(key)
        if fname is None:
            fname = _unique_name(node.op_type if not domain else f"{domain}.{node.op_type}", self.module.functions)
            self.specialised[key] = fname
            self._function(fname, fproto, arg_types, attrs)
        callee = self.module.functions[fname]
        ops = [v for v in operands]
        if any(v is None for v in ops):
            raise ModelLoadError(f"node '{node.name}' calls function {node.op_type} with an omitted input; pliant needs every function input")
        n_out = len(node.output)
        types = [callee.outputs[i].type if i < len(callee.outputs) else ANY for i in range(n_out)]
        op = Op("Call", ops, types, {"callee": fname}, domain=CALL_DOMAIN, label=label,
                result_names=[n or None for n in node.output])
        block.append(op)
        for name, r in zip(node.output, op.results):
            if name:
                scope.values[name] = r

    def _function(self, fname: str, f: onnx.FunctionProto, arg_types: list[Type], attrs: dict[str, AttrValue]) -> None:
        fn = Function(fname)
        self.module.add_function(fn)
        scope = _Scope({}, None)
        for name, t in zip(f.input, arg_types):
            scope.values[name] = fn.body.add_arg(t, name)
        saved = self.opsets
        fopsets = dict(saved)
        for o in f.opset_import:
            fopsets["" if o.domain == "ai.onnx" else o.domain] = int(o.version)
        self.opsets = fopsets
        try:
            self._nodes(f, fn.body, scope, attrs)
        finally:
            self.opsets = saved
        for o in f.output:
            v = scope.lookup(o)
            if v is None:
                raise ModelLoadError(f"function '{f.name}' output '{o}' is never produced")
            fn.body.add_output(v)
        fn.result_names = list(f.output)


def _attr_key(v: AttrValue) -> Any:
    if isinstance(v, np.ndarray):
        return (v.dtype.str, v.shape, v.tobytes())
    if isinstance(v, list):
        return tuple(_attr_key(x) for x in v)  # type: ignore[arg-type]
    return v


def _unique_name(base: str, taken: dict[str, Function]) -> str:
    if base not in taken:
        return base
    k = 1
    while f"{base}.{k}" in taken:
        k += 1
    return f"{base}.{k}"
