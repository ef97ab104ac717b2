"""Serving a bundle with Triton Inference Server: ``write_repository`` writes a model repository (the gate, one
model per route and the ``dsnet`` routing model); ``models`` holds the Python-backend models it runs.

Nothing here imports Triton: the routing model's ``triton_python_backend_utils`` exists only inside the server.
"""

from .repository import ENGINES, Repository, write_repository

__all__ = ["ENGINES", "Repository", "write_repository"]
