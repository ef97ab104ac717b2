"""Matching a labelled dataset's classes to a model's outputs, or saying why they cannot be matched.

Scoring a 10-class folder against a 1000-class model by position gives meaningless numbers, so the
match is by name whenever the model knows its class names, and by position only when the counts agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import DsnetError

_SHOWN = 6


def match_classes(data_classes: Sequence[str], model_labels: Sequence[str], num_classes: int, *,
                  data: str, model: str) -> np.ndarray:
    """``mapping[k]`` = the model output of the dataset's class ``k``.

    ``model_labels`` (empty if the model has no names) are matched by name; without names the
    counts must agree and dataset class ``k`` is output ``k``.
    """
    data_classes = list(data_classes)
    if model_labels:
        if len(model_labels) != num_classes:
            raise DsnetError(f"{model}: {len(model_labels)} class names for {num_classes} outputs")
        index = {name: k for k, name in enumerate(model_labels)}
        unknown = [c for c in data_classes if c not in index]
        if unknown:
            raise DsnetError(f"{data}: class folder(s) {_names(unknown)} are not classes of {model} "
                             f"(its classes: {_names(list(model_labels))})")
        return np.array([index[c] for c in data_classes], np.int64)
    if len(data_classes) != num_classes:
        raise DsnetError(f"{data} has {len(data_classes)} classes but {model} has {num_classes} outputs and no "
                         f"class names, so its classes cannot be matched; give labels=FILE (the model's class "
                         f"names, one per line, in output order) to match them by name")
    return np.arange(num_classes, dtype=np.int64)


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" ... ({len(names)} in all)" if len(names) > _SHOWN else "")
