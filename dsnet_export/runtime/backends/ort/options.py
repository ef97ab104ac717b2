"""The ONNX Runtime backend's options (``Dispatcher.load(dir, "ort", OrtOptions(...))``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OrtOptions:
    """How the ONNX Runtime backend makes its sessions.

    ``providers``: execution providers, full names or aliases ('cpu', 'cuda', 'tensorrt'), as a sequence or a
    comma-separated string; None: the CPU.  CPU is appended as the fallback.
    ``threads``: intra-op threads of every session; None: chosen per engine and call (a call too small to
    split runs on a one-thread session, see ``backend.SMALL_CALL_MACS``; others use one thread per core).
    ``share_weights``: feed every session the bundle's one memory-mapped copy of the weights (False: each
    session reads the weights file itself).
    ``shared_pool``: every session on ONNX Runtime's one process-wide thread pool (sized by the first
    ``threads`` given); ONNX Runtime then refuses every other session in the process that does not opt in.
    """

    providers: tuple[str, ...] | str | None = None
    threads: int | None = None
    share_weights: bool = True
    shared_pool: bool = False

    def __post_init__(self) -> None:
        if self.providers is not None and not isinstance(self.providers, str):
            object.__setattr__(self, "providers", tuple(self.providers))  # a list given: frozen means hashable
