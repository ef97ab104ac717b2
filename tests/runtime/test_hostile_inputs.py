"""Hostile inputs (issue 13): whatever a caller hands the dispatcher, and whatever bytes an .npy/.npz input file
holds, the answer is the logits of a clean float32 C-contiguous copy or a typed error, never another exception
and never an allocation the file's size does not justify."""

from __future__ import annotations

import io
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsnet_export import DsnetError
from dsnet_export.errors import InputError
from dsnet_export.runtime import Dispatcher
from dsnet_export.runtime.inputs import iter_inputs
from dsnet_export.runtime.manifest import InputInfo

SHAPE = (3, 32, 32)  # the tiny bundle's input
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])


@pytest.fixture(scope="module")
def dispatcher(tiny_bundle):
    with Dispatcher.load(tiny_bundle.path) as d:
        yield d


def _x(n: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *SHAPE)).astype(np.float32)


def _with(value, where, x=None):
    x = _x() if x is None else x
    x[where] = value
    return x


def _unaligned(x):
    buffer = np.zeros(x.nbytes + 1, np.uint8)
    view = np.frombuffer(buffer.data, np.float32, count=x.size, offset=1).reshape(x.shape)
    view[...] = x
    return view


def _read_only(x):
    x.setflags(write=False)
    return x


def _memmap(x, tmp_path):
    m = np.memmap(tmp_path / "x.dat", np.float32, "w+", shape=x.shape)
    m[...] = x
    m.flush()
    return np.memmap(tmp_path / "x.dat", np.float32, "r", shape=x.shape)


class _ArrayLike:  # torch-free, numpy-convertible
    def __init__(self, x):
        self.x = x

    def __array__(self, dtype=None, copy=None):
        return self.x if dtype is None else self.x.astype(dtype)


class _Sub(np.ndarray):
    pass


def _masked(x, nan=True):
    if nan:
        x[0, 0, 0, 0] = np.nan
    return np.ma.masked_array(x, mask=np.isnan(x) if nan else np.zeros(x.shape, bool))


ok_routes = [None, 0, 3, np.int64(1), "uniform:4", "largest"]
C = pytest.param
CASES = [
    # dtypes
    C(lambda x, p: x.astype(np.float64), None, id="float64"),
    C(lambda x, p: x.astype(np.float16), None, id="float16"),
    C(lambda x, p: x.astype(np.int32), None, id="int32"),
    C(lambda x, p: x.astype(np.int64), None, id="int64"),
    C(lambda x, p: (x > 0).astype(np.uint8), None, id="uint8"),
    C(lambda x, p: x > 0, None, id="bool"),
    C(lambda x, p: x.astype(object), None, id="object"),
    C(lambda x, p: x.astype(np.complex64), None, id="complex64"),
    C(lambda x, p: x.astype(">f4"), None, id="big-endian-f4"),
    C(lambda x, p: x.astype(">f8"), None, id="big-endian-f8"),
    C(lambda x, p: x.view([("v", np.float32)]).reshape(x.shape), None, id="structured"),
    # shapes
    C(lambda x, p: np.array(1.0, np.float32), None, id="0-d"),
    C(lambda x, p: np.float32(1.0), None, id="numpy-scalar"),
    C(lambda x, p: x.reshape(-1), None, id="1-d"),
    C(lambda x, p: x[0], None, id="3-d-no-batch"),
    C(lambda x, p: x[None], None, id="5-d"),
    C(lambda x, p: x[:0], None, id="zero-batch"),
    C(lambda x, p: np.zeros((0, 0, 0, 0), np.float32), None, id="all-zero-dims"),
    C(lambda x, p: x[:, :1], None, id="wrong-C"),
    C(lambda x, p: np.concatenate([x, x[:, :1]], 1), None, id="four-channels"),
    C(lambda x, p: x[:, :, :31], None, id="wrong-H"),
    C(lambda x, p: np.pad(x, ((0, 0), (0, 0), (0, 0), (0, 1))), None, id="wrong-W"),
    C(lambda x, p: x.transpose(0, 2, 3, 1), None, id="NHWC"),
    C(lambda x, p: np.broadcast_to(x[:1], (1024, *SHAPE)), None, id="huge-batch-broadcast"),
    # strides and memory
    C(lambda x, p: np.repeat(np.repeat(x, 2, 2), 2, 3)[:, :, ::2, ::2], None, id="strided-slice"),
    C(lambda x, p: x[::-1], None, id="negative-batch-stride"),
    C(lambda x, p: x[:, ::-1, :, ::-1], None, id="negative-strides"),
    C(lambda x, p: np.asfortranarray(x), None, id="fortran-order"),
    C(lambda x, p: np.broadcast_to(x[:1], x.shape), None, id="broadcast-batch"),
    C(lambda x, p: np.broadcast_to(x[:, :1], x.shape), None, id="broadcast-channel"),
    C(lambda x, p: np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2), None, id="nhwc-view"),
    C(lambda x, p: _unaligned(x), None, id="unaligned"),
    C(lambda x, p: _read_only(x), None, id="read-only"),
    C(lambda x, p: _read_only(x), "largest", id="read-only-fixed-route"),
    C(lambda x, p: _memmap(x, p), None, id="memmap"),
    C(lambda x, p: x.view(_Sub), None, id="ndarray-subclass"),
    C(lambda x, p: np.asmatrix(x[0, 0]), None, id="np.matrix"),
    C(lambda x, p: _masked(x), None, id="masked-nan"),
    C(lambda x, p: _masked(x), "largest", id="masked-nan-fixed-route"),
    C(lambda x, p: _masked(x, nan=False), None, id="masked-nothing"),
    # not arrays
    C(lambda x, p: x.tolist(), None, id="list"),
    C(lambda x, p: tuple(x.tolist()), None, id="tuple"),
    C(lambda x, p: None, None, id="None"),
    C(lambda x, p: "image.png", None, id="str"),
    C(lambda x, p: b"\0" * x.nbytes, None, id="bytes"),
    C(lambda x, p: {"image": x}, None, id="dict"),
    C(lambda x, p: _ArrayLike(x), None, id="__array__-object"),
    C(lambda x, p: 1.5, None, id="float"),
    # non-finite values
    C(lambda x, p: _with(np.nan, (0, 0, 0, 0)), None, id="nan-first"),
    C(lambda x, p: _with(np.nan, (1, 2, 31, 31)), None, id="nan-last"),
    C(lambda x, p: _with(np.inf, (1, 1, 16, 7)), None, id="inf-second-sample"),
    C(lambda x, p: _with(-np.inf, (0, 2, 3, 3)), None, id="minus-inf"),
    C(lambda x, p: np.full((2, *SHAPE), np.nan, np.float32), None, id="all-nan"),
    C(lambda x, p: _with(np.nan, (0, 0, 0, 0)), "largest", id="nan-fixed-route"),
    C(lambda x, p: _with(np.inf, (1, 0, 5, 5)), 2, id="inf-forced-route"),
    C(lambda x, p: _with(np.nan, (0, 1, 1, 1), _x(40)), None, id="nan-big-batch"),
    C(lambda x, p: _with(np.nan, (0, 0, 0, 0), np.asfortranarray(_x())), None, id="nan-fortran"),
    C(lambda x, p: _with(np.float32(3e38), (0, 0, 4, 4)), None, id="huge-finite"),
    C(lambda x, p: _with(np.float32(1e-45), (0, 0, 4, 4)), None, id="denormal"),
    # forced routes
    *[C(lambda x, p: x, route, id=f"route-{route!r}") for route in [-1, 99, "nope", True, False, 1.5, np.bool_(True),
                                                                    np.float32(1), "", "0", [0], b"largest"]],
    *[C(lambda x, p: x, route, id=f"ok-route-{route!r}") for route in ok_routes],
]


def test_at_least_45_hostile_cases():
    assert len(CASES) >= 45


@pytest.mark.parametrize("make, route", CASES)
def test_hostile_input(dispatcher, tmp_path, make, route):
    value = make(_x(), tmp_path)
    try:
        got = dispatcher.run(value, route)
    except InputError:
        return  # refused with the typed error: fine (any other exception fails the test)
    try:
        clean = np.ascontiguousarray(np.asarray(value, np.float32).copy())
    except (TypeError, ValueError) as exc:
        pytest.fail(f"accepted an input that has no float32 copy ({exc})")
    try:
        expected = dispatcher.run(clean, route)
    except InputError as exc:
        pytest.fail(f"accepted an input whose clean float32 copy is refused ({exc})")
    assert isinstance(got.logits, np.ndarray) and got.logits.dtype == np.float32
    assert got.logits.shape == (clean.shape[0], dispatcher.manifest.arch["num_classes"])
    np.testing.assert_array_equal(got.logits, expected.logits)
    np.testing.assert_array_equal(got.routes, expected.routes)


def _check_run(dispatcher, value, route) -> None:
    """The property: ``run`` gives the clean float32 copy's result, or raises InputError (nothing else)."""
    try:
        got = dispatcher.run(value, route)
    except InputError:
        return
    clean = np.ascontiguousarray(np.asarray(value, np.float32).copy())
    assert not isinstance(value, np.ma.MaskedArray), "a masked array was accepted"
    expected = dispatcher.run(clean, route)
    assert got.logits.dtype == np.float32 and got.logits.shape == expected.logits.shape
    np.testing.assert_array_equal(got.logits, expected.logits)
    np.testing.assert_array_equal(got.routes, expected.routes)


_DTYPES = ["<f4", ">f4", "<f8", "<f2", "<i4", "|u1", "|b1", "<c8", "<M8[s]", "|O", "<U3", "|V4"]


@st.composite
def dispatcher_inputs(draw):
    """Arrays near the valid one: any dtype, rank and shape, strides from slicing and transposing, masks,
    NaN/inf, read-only and unaligned buffers."""
    shape = draw(st.one_of(
        st.tuples(st.integers(0, 9), *[st.just(d) for d in SHAPE]),  # mostly valid
        st.lists(st.integers(0, 34), min_size=0, max_size=5).map(tuple)))
    dtype = np.dtype(draw(st.sampled_from(_DTYPES[:1] * 6 + _DTYPES)))
    n = int(np.prod(shape)) if shape else 1
    if n > 60_000:
        shape, n = (2, *SHAPE), 2 * int(np.prod(SHAPE))
    base = np.random.default_rng(draw(st.integers(0, 9))).standard_normal(n).reshape(shape)
    try:
        x = base.astype(dtype)
    except (TypeError, ValueError):
        x = base.astype(np.float32)
    if x.ndim >= 1 and x.dtype.kind == "f" and x.size and draw(st.booleans()):
        flat = x.reshape(-1)
        with np.errstate(over="ignore"):  # 3e38 as float16 is inf: fine, one more non-finite value
            flat[draw(st.integers(0, x.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 3e38, 0.0]))
    layout = draw(st.sampled_from(["plain", "fortran", "strided", "reversed", "transposed", "masked", "read-only",
                                   "unaligned", "list"]))
    if layout == "fortran":
        x = np.asfortranarray(x)
    elif layout == "strided" and x.ndim:
        x = np.repeat(x, 2, axis=-1)[..., ::2]
    elif layout == "reversed" and x.ndim:
        x = x[::-1]
    elif layout == "transposed" and x.ndim >= 2:
        x = np.swapaxes(x, -1, -2)
    elif layout == "masked":
        x = np.ma.masked_array(x, mask=np.zeros(x.shape, bool) if draw(st.booleans()) else None)
    elif layout == "read-only":
        x.setflags(write=False)
    elif layout == "unaligned" and x.dtype == np.float32:
        x = _unaligned(x)
    elif layout == "list" and x.size < 4000:
        x = x.tolist()
    return x


@FUZZ
@given(value=dispatcher_inputs(), route=st.sampled_from([None, None, 0, 3, "uniform:4", "largest", 7, "x"]))
def test_fuzz_dispatcher_inputs(dispatcher, value, route):
    _check_run(dispatcher, value, route)


@pytest.mark.parametrize("method", ["gate_logits", "__call__"])
@pytest.mark.parametrize("value", [None, [1.0], np.zeros((1, 3, 32, 32)), np.zeros((0, *SHAPE), np.float32)],
                         ids=["None", "list", "float64", "empty"])
def test_other_entry_points_refuse_with_input_error(dispatcher, method, value):
    with pytest.raises(InputError):
        getattr(dispatcher, method)(value)


@pytest.mark.parametrize("bias", [None, [0, 0, 0], [np.nan] * 4, "abc", [[1, 2], [3, 4]], object(), [1e39] * 4])
def test_bad_gate_bias_is_an_input_error_and_changes_nothing(dispatcher, bias):
    before = dispatcher.gate_bias
    if bias is None:
        dispatcher.gate_bias = None  # the one valid value here: zeros
        assert not dispatcher.gate_bias.any()
        dispatcher.gate_bias = before
        return
    with pytest.raises(InputError):
        dispatcher.gate_bias = bias
    assert dispatcher.gate_bias is before


# -- input files -------------------------------------------------------------------------------------------------
SPEC = InputInfo(name="image", shape=list(SHAPE), layout="NCHW", dtype="float32", mean=[0.5, 0.4, 0.3],
                 std=[0.2, 0.2, 0.25], resize=None, interpolation="bilinear")
MB = 1 << 20


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _read(path):
    """``iter_inputs`` on ``path``: its arrays, or None for the typed error; the peak allocation is bounded by the
    file's size, whatever its header claims."""
    size = path.stat().st_size
    tracemalloc.start()
    try:
        arrays = [item.array for item in iter_inputs([path], SPEC)]
    except DsnetError:
        arrays = None
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < 10 * size + 10 * MB, f"peak {peak} bytes for a {size}-byte file"
    for array in arrays or []:
        assert array.dtype == np.float32 and array.ndim == 4 and array.flags.c_contiguous
    return arrays


def _npy(header: dict, data: bytes, version=(1, 0)) -> bytes:
    f = io.BytesIO()
    write = np.lib.format.write_array_header_1_0 if version == (1, 0) else np.lib.format.write_array_header_2_0
    write(f, header)
    return f.getvalue() + data


def _valid_npy(shape=(2, *SHAPE), dtype="<f4") -> bytes:
    f = io.BytesIO()
    np.save(f, np.ones(shape, dtype))
    return f.getvalue()


DESCRS = ["<f4", ">f4", "<f8", "<f2", "<i4", "|b1", "|u1", "<c8", "O", "|V8", "<U3", "S4", "<M8[s]", "f4", "(2,)f4",
          "x", "<f16"]
dims = st.integers(min_value=-2, max_value=10**13)
headers = st.fixed_dictionaries({
    "descr": st.sampled_from(DESCRS),
    "fortran_order": st.booleans(),
    "shape": st.one_of(st.tuples(dims, dims, dims, dims), st.tuples(dims, dims, dims), st.lists(dims, max_size=7)
                       .map(tuple), st.just((3e12,)), st.just((3 * 10**12,)))})


def _header_or_none(header, version=(1, 0)):
    try:
        return _npy(header, b"", version)
    except (ValueError, TypeError):
        return None


@FUZZ
@given(data=st.binary(max_size=4096))
def test_fuzz_npy_arbitrary_bytes(workdir, data):
    path = workdir / "any.npy"
    path.write_bytes(data)
    _read(path)


@FUZZ
@given(header=headers, data=st.binary(max_size=2048), version=st.sampled_from([(1, 0), (2, 0)]))
def test_fuzz_npy_crafted_headers(workdir, header, data, version):
    head = _header_or_none(header, version)
    if head is None:
        head = _npy({"descr": "<f4", "fortran_order": False, "shape": (3 * 10**12,)}, b"")
    path = workdir / "crafted.npy"
    path.write_bytes(head + data)
    _read(path)


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 127), st.integers(0, 255)), min_size=1, max_size=6),
       cut=st.one_of(st.none(), st.integers(0, 24704)))
def test_fuzz_npy_mutated_valid_file(workdir, flips, cut):
    raw = bytearray(_valid_npy())
    for where, byte in flips:  # within the magic and the header
        raw[where] = byte
    path = workdir / "mutated.npy"
    path.write_bytes(bytes(raw[:cut]))
    arrays = _read(path)
    if arrays and not flips and cut is None:
        assert arrays[0].shape == (2, *SHAPE)


def _zip(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    f = io.BytesIO()
    with zipfile.ZipFile(f, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return f.getvalue()


@FUZZ
@given(data=st.binary(max_size=4096), zip_magic=st.booleans())
def test_fuzz_npz_arbitrary_bytes(workdir, data, zip_magic):
    path = workdir / "any.npz"
    path.write_bytes((b"PK\x03\x04" if zip_magic else b"") + data)
    _read(path)


@FUZZ
@given(header=headers, data=st.binary(max_size=1024), name=st.sampled_from(["x.npy", "x", "a/b.npy", "x.npy.txt"]),
       compression=st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]), good=st.booleans())
def test_fuzz_npz_crafted_members(workdir, header, data, name, compression, good):
    head = _header_or_none(header) or _npy({"descr": "<f8", "fortran_order": True, "shape": (10**9, 3, 32, 32)}, b"")
    members = {name: head + data}
    if good:
        members["good.npy"] = _valid_npy((1, *SHAPE))
    path = workdir / "crafted.npz"
    path.write_bytes(_zip(members, compression))
    _read(path)


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=8),
       cut=st.one_of(st.none(), st.integers(0, 13000)), compression=st.sampled_from([zipfile.ZIP_STORED,
                                                                                      zipfile.ZIP_DEFLATED]))
def test_fuzz_npz_mutated_valid_archive(workdir, flips, cut, compression):
    raw = bytearray(_zip({"a.npy": _valid_npy((1, *SHAPE)), "b.npy": _valid_npy((1, *SHAPE), "<f8")}, compression))
    for where, byte in flips:
        raw[min(where, len(raw) - 1)] = byte
    path = workdir / "mutated.npz"
    path.write_bytes(bytes(raw[:cut]))
    _read(path)


@pytest.mark.parametrize("content, message", [
    (_npy({"descr": "<f4", "fortran_order": False, "shape": (3 * 10**12,)}, b"\0" * 64), "truncated or corrupt"),
    (_npy({"descr": "<f4", "fortran_order": False, "shape": (10**6, 3, 32, 32)}, b"\0" * 64), "truncated"),
    (_npy({"descr": "<i4", "fortran_order": False, "shape": (1, 3, 32, 32)}, b"\0" * 12288), "floating-point"),
    (_npy({"descr": "<f4", "fortran_order": False, "shape": (3, 32)}, b"\0" * 384), r"\[C, H, W\]"),
    (_npy({"descr": "<f4", "fortran_order": False, "shape": (-1, 3, 32, 32)}, b""), "negative"),
    (b"\x93NUMPY\x03\x00" + b"\0" * 100, "not a readable|not supported"),
    (b"", "not a readable .npy"),
])
def test_crafted_npy_is_one_typed_error(tmp_path, content, message):
    path = tmp_path / "x.npy"
    path.write_bytes(content)
    with pytest.raises(DsnetError, match=message):
        list(iter_inputs([path], SPEC))


@pytest.mark.parametrize("content, message", [
    (b"garbage, not a zip", "not a readable .npz"),
    (b"PK\x05\x06" + b"\0" * 18, "not a readable .npz|not an array"),
    (_zip({"x.npy": _npy({"descr": "<f4", "fortran_order": False, "shape": (3 * 10**12,)}, b"")}), "truncated"),
    (_zip({"x.txt": b"hello"}), "not an array"),
    (_zip({"x.npy": b"\0" * (10 * MB)}, zipfile.ZIP_DEFLATED)[:-30], "not a readable .npz"),
])
def test_crafted_npz_is_one_typed_error(tmp_path, content, message):
    path = tmp_path / "x.npz"
    path.write_bytes(content)
    with pytest.raises(DsnetError, match=message):
        list(iter_inputs([path], SPEC))


def test_npz_compression_bomb_is_refused_before_inflating(tmp_path):
    """A member whose declared size exceeds what deflate can give from its compressed bytes."""
    raw = bytearray(_zip({"x.npy": _valid_npy((1, *SHAPE))}, zipfile.ZIP_DEFLATED))
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as z:
        info = z.infolist()[0]
    # patch the central directory's uncompressed size (offset 24 in the central header)
    central = raw.rfind(b"PK\x01\x02")
    raw[central + 24:central + 28] = (0xFFFFFFF0).to_bytes(4, "little")
    path = tmp_path / "bomb.npz"
    path.write_bytes(bytes(raw))
    assert info.compress_size < 0xFFFFFFF0 // 1100
    with pytest.raises(DsnetError, match="more than compression can give|not a readable"):
        _read(path) if False else list(iter_inputs([path], SPEC))


def test_cli_names_a_lying_npy_in_one_line(tiny_bundle, tmp_path, capsys):
    from dsnet_export.cli import main

    path = tmp_path / "huge.npy"
    path.write_bytes(_npy({"descr": "<f4", "fortran_order": False, "shape": (3 * 10**12,)}, b"\0" * 16))
    for command in (["run", str(tiny_bundle.path), str(path)],
                    ["calibrate", str(tiny_bundle.path), "--data", str(path), "--target-macs", "1M",
                     "--out", str(tmp_path / "b.json")]):
        assert main(command) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err and "truncated or corrupt" in err and "MemoryError" not in err
