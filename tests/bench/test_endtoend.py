"""The end-to-end section scores every contender on the same labelled samples, keeps every timed call,
and loads labelled data as the bundle expects it.  No timing assertions: timing is noisy."""

import dataclasses
import itertools
import json

import numpy as np
import pytest

from dsnet_export.bench.contenders import BundleContext
from dsnet_export.bench.endtoend import (
    CHUNK,
    DYNAMIC_B1,
    DYNAMIC_B8,
    ORACLE_MIX,
    LabelledData,
    format_end_to_end,
    load_labelled,
    plot_end_to_end,
    run_end_to_end,
)
from dsnet_export.errors import DsnetError
from dsnet_export.runtime import Dispatcher, load_bundle
from dsnet_export.runtime.inputs import preprocess_image

SAMPLES = 48
ROUNDS = 2


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """The embedded default digits model, exported as ``python -m dsnet_export build`` does with no arguments."""
    from dsnet_export.export import build_bundle

    report = build_bundle(out=tmp_path_factory.mktemp("endtoend") / "digits", progress=False)
    return load_bundle(report.path)


@pytest.fixture(scope="module")
def ctx(bundle):
    return BundleContext.open(bundle)


@pytest.fixture(scope="module")
def dispatcher(bundle):
    with Dispatcher.load(bundle.root, verify=False) as d:
        yield d


@pytest.fixture(scope="module")
def data(bundle):
    return load_labelled("digits", bundle.manifest, limit=SAMPLES)


@pytest.fixture(scope="module")
def section(dispatcher, ctx, data):
    return run_end_to_end(dispatcher, ctx, data, rounds=ROUNDS, threads=1)


def gate_routes(bundle):
    m = bundle.manifest
    return [m.routes[k] for k in m.gate.routes]


def accuracy(logits, labels) -> float:
    return float(np.mean(logits.argmax(1) == labels))


# -- the section on the digits bundle ---------------------------------------------------------
def test_every_contender_is_present(section, bundle, data):
    expected = {DYNAMIC_B1, DYNAMIC_B8, ORACLE_MIX, *(f"static {r.name}" for r in gate_routes(bundle))}
    assert set(section["contenders"]) == expected
    assert len(expected) == 3 + len(gate_routes(bundle))
    assert section["data"]["samples"] == len(data.labels) == SAMPLES
    for name, row in section["contenders"].items():
        assert 0.0 <= row["accuracy"] <= 1.0, name
        assert row["mean_ms"] > 0 and row["p50_call_ms"] > 0 and row["p95_call_ms"] >= row["p50_call_ms"], name


def test_dynamic_accuracy_is_the_dispatchers(section, dispatcher, data):
    expected = accuracy(dispatcher(data.images).logits, data.labels)
    rows = section["contenders"]
    assert rows[DYNAMIC_B1]["accuracy"] == rows[DYNAMIC_B8]["accuracy"] == expected
    assert rows[ORACLE_MIX]["accuracy"] == expected
    assert section["headline"]["oracle_max_abs_diff"] <= 1e-4


def test_static_accuracy_is_the_forced_routes(section, dispatcher, bundle, data):
    for route in gate_routes(bundle):
        row = section["contenders"][f"static {route.name}"]
        assert row["accuracy"] == accuracy(dispatcher.run(data.images, route=route.index).logits, data.labels)
        assert row["avg_macs"] == route.macs
        assert row["route"] == route.name and row["histogram"] is None


def test_dynamic_madds_and_routes_are_the_gates_choices(section, dispatcher, bundle, data):
    result = dispatcher(data.images)
    m = bundle.manifest
    expected_histogram = {m.routes[k].name: int(np.sum(result.routes == k)) for k in m.gate.routes}
    for name in (DYNAMIC_B1, DYNAMIC_B8, ORACLE_MIX):
        row = section["contenders"][name]
        assert row["avg_macs"] == pytest.approx(float(np.mean(result.macs)), rel=1e-12), name
        assert row["routes"] == result.routes.tolist(), name
        assert row["histogram"] == expected_histogram, name
    assert section["headline"]["b8_routes_agree"] is True


def test_every_timed_call_is_kept(section, bundle):
    rows = section["contenders"]
    batches = -(-SAMPLES // 8)
    for name, row in rows.items():
        calls = batches if name == DYNAMIC_B8 else SAMPLES
        assert len(row["seconds"]) == ROUNDS, name
        assert all(len(per_round) == calls for per_round in row["seconds"]), name
        assert len(row["call_sizes"]) == calls and sum(row["call_sizes"]) == SAMPLES, name
        assert all(s > 0 for per_round in row["seconds"] for s in per_round), name
    names, chunks = list(rows), -(-SAMPLES // CHUNK)
    starts = [r * chunks % len(names) for r in range(ROUNDS)]  # the order rotates by one per chunk
    assert section["round_orders"] == [names[k:] + names[:k] for k in starts]


def test_section_is_json_ready(section, bundle):
    text = json.dumps(section, allow_nan=False)
    assert json.loads(text) == section  # nothing numpy-typed, no tuples, no NaN
    h = section["headline"]
    assert h["widest_static"] == f"static {max(gate_routes(bundle), key=lambda r: r.macs).name}"
    assert isinstance(h["dynamic_accuracy_at_least_widest"], bool)
    assert section["dispatcher"] == {"policy": "per-sample", "gate_bias": [0.0] * len(gate_routes(bundle))}


def test_latency_arithmetic_with_a_fake_clock(dispatcher, ctx, data):
    """Every call takes exactly 1 ms on this clock: a batch of 8 gives 1/8 ms per sample, the last
    (smaller) batch its own share; settle runs before every pass, on_round after every round."""
    few = LabelledData(data.name, data.images[:20], data.labels[:20], data.classes)  # batches of 8, 8 and 4
    ticks = itertools.count()
    settles, rounds_done = [], []
    section = run_end_to_end(dispatcher, ctx, few, rounds=2, threads=1, clock=lambda: next(ticks) * 1e-3,
                             settle=lambda: settles.append(1), on_round=rounds_done.append)
    rows = section["contenders"]
    for name, row in rows.items():
        assert row["p50_call_ms"] == pytest.approx(1.0) and row["p95_call_ms"] == pytest.approx(1.0), name
        if name != DYNAMIC_B8:
            assert row["mean_ms"] == pytest.approx(1.0), name
    assert rows[DYNAMIC_B8]["mean_ms"] == pytest.approx((16 / 8 + 4 / 4) / 20)
    assert rows[DYNAMIC_B8]["call_sizes"] == [8, 8, 4]
    assert len(settles) == len(rows) * (1 + 2)  # the warm-up pass and two rounds
    assert rounds_done == [0, 1]
    h = section["headline"]
    assert h["dynamic_b1_vs_oracle_mix"] == pytest.approx(1.0)
    assert h["dynamic_b1_vs_widest_static"] == pytest.approx(1.0)
    if h["macs_ratio"] < 1:
        assert h["realised_saving_fraction"] == pytest.approx(0.0, abs=1e-9)
    else:
        assert h["realised_saving_fraction"] is None


def test_format_mentions_every_contender(section):
    lines = format_end_to_end(section)
    assert all(isinstance(line, str) for line in lines)
    text = "\n".join(lines)
    for name, row in section["contenders"].items():
        assert name in text
        assert f"{row['accuracy']:.2%}" in text
    assert "dynamic b1 / oracle mix" in text
    assert f"dynamic b1 / {section['headline']['widest_static']}" in text


def test_plot_draws_on_a_figure(section, tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    plot_end_to_end(section, ax)
    assert ax.get_title() == "accuracy vs measured latency"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {DYNAMIC_B1, DYNAMIC_B8, ORACLE_MIX} <= set(labels) and len(labels) == 4
    static_line = ax.get_lines()[0]
    assert len(static_line.get_xdata()) == sum(r["kind"] == "static" for r in section["contenders"].values())
    path = tmp_path / "endtoend.png"
    fig.savefig(path)
    assert path.stat().st_size > 10_000


# -- loading labelled data --------------------------------------------------------------------
def test_digits_are_the_test_split_normalised_by_the_manifest(data, bundle, digits):
    m = bundle.manifest
    assert data.images.dtype == np.float32 and data.labels.dtype == np.int64
    assert data.images.shape == (SAMPLES, *m.input.shape) and data.images.flags.c_contiguous
    assert data.classes == [str(i) for i in range(10)]
    mean = np.array(m.input.mean, np.float32).reshape(1, -1, 1, 1)
    std = np.array(m.input.std, np.float32).reshape(1, -1, 1, 1)
    raw = (data.images * std + mean).reshape(SAMPLES, -1)
    test = digits.test.images.reshape(len(digits.test.labels), -1)
    for image, label in zip(raw, data.labels):  # each sample is one test image, with its label
        match = np.flatnonzero(np.abs(test - image).max(1) < 1e-5)
        assert len(match) == 1 and digits.test.labels[match[0]] == label
    assert len({tuple(np.round(r, 4)) for r in raw}) == SAMPLES  # no sample twice


def write_folder(root, classes, per_class, size, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = {}
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            path = root / name / f"{i}.png"
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
            paths[path] = name
    return paths


def with_classes(manifest, n):
    return dataclasses.replace(manifest, arch={**manifest.arch, "num_classes": n}, labels=[])


def test_folder_labels_follow_the_sub_folders(tmp_path, bundle):
    m = with_classes(bundle.manifest, 3)
    paths = write_folder(tmp_path / "set", ["cat", "ant", "bee"], 4, m.input.shape[1])
    loaded = load_labelled(str(tmp_path / "set"), m)
    # The bundle's outputs: it records no class names, so the sorted folders map in order.
    assert loaded.classes == ["0", "1", "2"]
    assert loaded.images.shape == (12, *m.input.shape) and loaded.images.dtype == np.float32
    expected = {path: preprocess_image(path, m.input) for path in paths}
    seen = set()
    for image, label in zip(loaded.images, loaded.labels):
        path = next(p for p, e in expected.items() if np.array_equal(e, image))
        assert ["ant", "bee", "cat"][label] == paths[path]
        seen.add(path)
    named = dataclasses.replace(m, labels=["cat", "bee", "ant"])  # a bundle that records its class names
    by_name = load_labelled(str(tmp_path / "set"), named)
    for image, label in zip(by_name.images, by_name.labels):
        path = next(p for p, e in expected.items() if np.array_equal(e, image))
        assert named.labels[label] == paths[path]
    assert seen == set(paths)
    first = load_labelled(tmp_path / "set", m, limit=5)
    np.testing.assert_array_equal(first.images, loaded.images[:5])  # a limit keeps a prefix of the fixed shuffle
    np.testing.assert_array_equal(first.labels, loaded.labels[:5])


def test_folder_errors(tmp_path, bundle):
    m = bundle.manifest
    write_folder(tmp_path / "one", ["only"], 2, 8)
    with pytest.raises(DsnetError, match="only.*not classes of"):
        load_labelled(str(tmp_path / "one"), m)
    with pytest.raises(DsnetError, match="no such folder"):
        load_labelled(str(tmp_path / "missing"), m)
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(DsnetError, match="not a folder"):
        load_labelled(str(tmp_path / "file.png"), m)
    for name in ("a", "b"):
        (tmp_path / "empty" / name).mkdir(parents=True)
    with pytest.raises(DsnetError, match="no images"):
        load_labelled(str(tmp_path / "empty"), with_classes(m, 2))


def test_class_count_mismatch_names_both_numbers(tmp_path, bundle):
    write_folder(tmp_path / "three", ["a", "b", "c"], 1, 8)
    with pytest.raises(DsnetError, match="3 classes.*10 outputs"):
        load_labelled(str(tmp_path / "three"), with_classes(bundle.manifest, 10))  # a 10-class bundle without names
    with pytest.raises(DsnetError, match="a, b, c are not classes of the bundle"):
        load_labelled(str(tmp_path / "three"), bundle.manifest)  # the digits bundle, which names its classes
    with pytest.raises(DsnetError, match="10 classes.*1000 outputs"):
        load_labelled("digits", with_classes(bundle.manifest, 1000))  # as the ImageNet-size oracle bundle


def test_digits_follow_the_bundle_input(bundle):
    m = bundle.manifest
    grey = dataclasses.replace(m, input=dataclasses.replace(m.input, shape=[1, 24, 24], mean=[0.3], std=[0.3]))
    assert load_labelled("digits", grey, limit=4).images.shape == (4, 1, 24, 24)


def test_a_limit_below_one_is_an_error(bundle):
    with pytest.raises(DsnetError, match="limit"):
        load_labelled("digits", bundle.manifest, limit=0)
