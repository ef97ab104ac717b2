"""The one comparison routine: tolerance arithmetic, every engine compared, every row in the error."""

import numpy as np
import pytest

from dsnet_export import DsnetError
from dsnet_export.runtime import Dispatcher
from dsnet_export.runtime.compare import (
    DispatcherOutputs,
    ParityError,
    Tolerance,
    check_diffs,
    compare_engines,
    diff_row,
)


def test_tolerance_is_absolute_plus_relative_to_the_reference_scale():
    ref = np.array([[10.0, -20.0]])
    assert Tolerance(1e-3, 1e-2).limit(ref) == pytest.approx(1e-3 + 0.2)
    row = diff_row("e", "r", ref, ref + 0.2, Tolerance(0.0, 1e-2))
    assert row.ok and row.max_rel == pytest.approx(0.01)
    assert not diff_row("e", "r", ref, ref + 0.21, Tolerance(0.0, 1e-2)).ok
    assert not diff_row("e", "r", ref, ref[:, :1], Tolerance(1.0)).ok  # a shape mismatch never passes


class Shifted(DispatcherOutputs):
    """A candidate whose route ``uniform:1`` is off by ``shift``."""

    shift = 0.5

    def route_logits(self, route, x):
        out = super().route_logits(route, x)
        return out + self.shift if route.name == "uniform:1" else out


def test_every_engine_is_compared_and_every_mismatch_listed(tiny_bundle):
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with Dispatcher.load(tiny_bundle.path) as d:
        rows = compare_engines(d.manifest, DispatcherOutputs(d), Shifted(d), x, Tolerance(1e-5))
    assert [r.route for r in rows] == ["gate", *(r.name for r in d.manifest.routes)]
    assert [r.route for r in rows if not r.ok] == ["uniform:1"]
    with pytest.raises(ParityError) as caught:
        check_diffs("candidate vs reference", rows)
    assert isinstance(caught.value, DsnetError) and caught.value.rows == rows
    lines = str(caught.value).splitlines()
    assert lines[0] == f"candidate vs reference: 1 of {len(rows)} engines beyond tolerance"
    assert len(lines) == 3 + len(rows)  # the heading, the table's header and rule, one line per engine
