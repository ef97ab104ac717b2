"""The built-in block families, one package each (see ``arch.families``).

A family package registers a ``BlockFamily`` in its ``__init__`` (torch-free: its cost) and keeps
each world's part in its own module: ``graph`` (ONNX emitters, numpy + onnx) and ``modules``
(torch).  The README's "Adding a block family" walks through a new one.
"""
