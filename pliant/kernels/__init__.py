"""Native kernels from the Tensor-Comprehension-style kernel language (DESIGN.md decision 6).

The pipeline, one module per step (``pliant.kernels.compiled.generate_c``/``build``):

1. ``pliant.frontends.tc``  -- source text -> ``ir.KernelDef`` (lexer, parser, name resolution)
2. ``check``                -- dtypes of every expression, explicit casts, roles of tensors
3. ``ranges``               -- range inference: loop bounds, sizes of outputs and temporaries
4. ``schedule`` + ``lower`` -- loop order, tiling, fusion, parallel and vector loops, folding
5. ``emit_c``               -- one C function; ``symbolic`` prints size expressions exactly
6. ``toolchain`` + ``cache``-- the system compiler, probed once; objects cached on disk
7. ``compiled``             -- argument binding, output allocation, calls through ctypes

``autotune`` searches schedules (and times ``vendor``'s BLAS path); ``cli``
adds ``pliant tune``.  The user-facing API is ``pliant.tc``.
"""
