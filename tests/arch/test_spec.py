import json

import pytest

from dsnet_export.arch import (
    ArchSpec,
    GateSpec,
    StageSpec,
    StemSpec,
    gate_head_macs,
    get_arch,
    list_archs,
    resolve_route,
    route_cost,
)
from dsnet_export.errors import RouteError, SpecError

# Official table (ARCHITECTURE.md section 6): uniform k -> MAdds (M), params of the static subnet (M).
OFFICIAL_MADDS = [132.89, 152.92, 175.15, 199.59, 226.24, 255.10, 286.17, 319.44, 354.92, 392.61, 432.51,
                  474.61, 518.93, 565.45]
OFFICIAL_PARAMS = [2.66, 2.94, 3.22, 3.53, 3.85, 4.18, 4.52, 4.89, 5.26, 5.65, 6.05, 6.47, 6.90, 7.35]


@pytest.mark.parametrize("k", range(14))
def test_ds_mbnet_madds_match_official_table(k):
    cost = route_cost(get_arch("ds_mbnet"), f"uniform:{k}")
    assert abs(cost.macs / 1e6 - OFFICIAL_MADDS[k]) < 0.1
    assert abs(cost.params / 1e6 - OFFICIAL_PARAMS[k]) < 0.01


def test_ds_mbnet_largest_and_gate_head():
    spec = get_arch("ds_mbnet")
    largest = route_cost(spec, "largest")
    assert abs(largest.macs / 1e6 - 819.88) < 0.1
    # The supernet's parameter count is the largest route's plus the gate head (ARCHITECTURE.md 6).
    assert largest.params + gate_head_macs(spec) == 7_676_204
    assert gate_head_macs(spec) == 264


def test_madds_follow_input_size():
    spec = get_arch("ds_mbnet_tiny")
    assert route_cost(spec, 0, (64, 64)).macs > 3.5 * route_cost(spec, 0).macs


@pytest.mark.parametrize("name", list_archs())
def test_spec_round_trips_through_json(name):
    spec = get_arch(name)
    assert ArchSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_official_name_lookup():
    assert get_arch("slimmable_mbnet_v1_bn_uniform").name == "ds_mbnet"
    with pytest.raises(SpecError, match="unknown architecture 'nope'"):
        get_arch("nope")


def test_from_dict_rejects_unknown_and_missing_fields():
    data = get_arch("ds_mbnet_tiny").to_dict()
    with pytest.raises(SpecError, match="unknown field"):
        ArchSpec.from_dict({**data, "extra": 1})
    del data["stem"]
    with pytest.raises(SpecError, match="arch spec: stem: missing field"):
        ArchSpec.from_dict(data)


def _spec(**changes):
    base = dict(name="t", stem=StemSpec((4, 8)),
                stages=(StageSpec((8, 16), 1), StageSpec((16, 24, 32), 1, stride=2),
                        StageSpec((32, 40, 48), 1, stride=2)),
                gate=GateSpec(1, (0, 1)), num_classes=3)
    base.update(changes)
    return ArchSpec(**base)


@pytest.mark.parametrize("changes, message", [
    (dict(stem=StemSpec((8, 4))), "strictly increasing"),
    (dict(stages=(StageSpec((8, 16), 1, block="resnet"),)), "unknown block type"),
    (dict(gate=GateSpec(5, (0, 1))), "stage must index"),
    (dict(gate=GateSpec(1, (0, 7))), "routes must be choice indexes"),
    (dict(gate=GateSpec(1, (0,))), "at least two routes"),
    (dict(stages=(StageSpec((8, 16), 1), StageSpec((16, 24, 32), 1), StageSpec((32, 40), 1))),
     "needs 3 width choices"),
    (dict(num_classes=0), "num_classes"),
])
def test_validation_names_the_problem(changes, message):
    with pytest.raises(SpecError, match=message):
        _spec(**changes)


def test_route_resolution():
    spec = get_arch("ds_mbnet")
    assert resolve_route(spec, 2).widths(spec) == (16, 32, 48, 96, 288, 800)
    assert resolve_route(spec, "uniform:2").choices == resolve_route(spec, 2).choices
    assert resolve_route(spec, "smallest").choices == resolve_route(spec, "uniform:0").choices
    assert resolve_route(spec, "largest").widths(spec) == (24, 88, 168, 264, 640, 1152)
    assert resolve_route(spec, "uniform:9").gate_index is None
    assert resolve_route(spec, "uniform:9").shares_gate(spec)
    assert not resolve_route(spec, "largest").shares_gate(spec)
    for bad in [4, -1, "uniform:14", "medium", True, 1.5]:
        with pytest.raises(RouteError):
            resolve_route(spec, bad)
