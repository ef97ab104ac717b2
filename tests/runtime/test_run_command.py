"""run and calibrate on real folders: unreadable images skipped (or fatal with --strict), --batch, --labels, summary."""

import json

import numpy as np
import pytest
from PIL import Image

from dsnet_export import DsnetError
from dsnet_export.cli import main
from dsnet_export.runtime import Dispatcher
from dsnet_export.runtime.inputs import iter_inputs
from dsnet_export.runtime.manifest import InputInfo

SPEC = InputInfo(name="image", shape=[3, 32, 32], layout="NCHW", dtype="float32", mean=[0.5, 0.4, 0.3],
                 std=[0.2, 0.2, 0.25], resize=None, interpolation="bilinear")


def _images(folder, n, seed=0):
    """``n`` noisy 32x32 PNGs (different content, so routes and logits differ), named i0.png ..."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        pixels = (rng.random((4, 4, 3)) * 255).astype(np.uint8)
        paths.append(folder / f"i{i}.png")
        Image.fromarray(pixels).resize((32, 32), Image.Resampling.BILINEAR).save(paths[-1])
    return paths


def _bad(path):
    path.write_bytes(b"not an image at all")
    return path


def test_iter_inputs_reports_and_skips_unreadable_images(tmp_path):
    folder = tmp_path / "imgs"
    _images(folder, 2)
    bad = _bad(folder / "i1b.png")
    with pytest.raises(DsnetError, match="i1b.png: not a readable image"):
        list(iter_inputs([folder], SPEC))  # no on_error: the first unreadable image raises (--strict)
    seen = []
    items = list(iter_inputs([folder], SPEC, on_error=lambda name, exc: seen.append(name)))
    assert [i.name for i in items] == [str(folder / "i0.png"), str(folder / "i1.png")] and seen == [str(bad)]
    assert all(i.image for i in items)
    with pytest.raises(DsnetError, match="not a readable image"):  # the only input: still an error
        list(iter_inputs([bad], SPEC, on_error=lambda *a: None))
    seen.clear()
    items = list(iter_inputs([bad, folder / "i0.png"], SPEC, on_error=lambda name, exc: seen.append(name)))
    assert [i.name for i in items] == [str(folder / "i0.png")] and seen == [str(bad)]  # one of several: skipped


def test_run_skips_an_unreadable_image_and_reports_it(tiny_bundle, tmp_path, capsys):
    folder = tmp_path / "imgs"
    _images(folder, 3)
    _bad(folder / "i1b.png")
    assert main(["run", str(tiny_bundle.path), str(folder)]) == 0
    captured = capsys.readouterr()
    warnings = captured.err.splitlines()
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: skipped {folder / 'i1b.png'}: not a readable")
    assert sum(": route " in line for line in captured.out.splitlines()) == 3
    assert "1 unreadable input skipped" in captured.out

    assert main(["run", str(tiny_bundle.path), str(folder), "--strict"]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: ") and "i1b.png" in captured.err
    assert main(["run", str(tiny_bundle.path), str(folder / "i1b.png")]) == 1  # a single named file
    assert "not a readable image" in capsys.readouterr().err


def test_run_batches_images_and_keeps_arrays_as_given(tiny_bundle, tmp_path, capsys, monkeypatch):
    first, second = _images(tmp_path / "a", 5, seed=1), _images(tmp_path / "b", 2, seed=2)
    np.save(tmp_path / "arr.npy", np.random.default_rng(3).standard_normal((3, 3, 32, 32)).astype(np.float32))
    sizes = []
    original = Dispatcher.run

    def spy(self, x, *args, **kwargs):
        sizes.append(x.shape[0])
        return original(self, x, *args, **kwargs)

    monkeypatch.setattr(Dispatcher, "run", spy)
    inputs = [str(tmp_path / "a"), str(tmp_path / "arr.npy"), str(tmp_path / "b")]
    assert main(["run", str(tiny_bundle.path), *inputs, "--batch", "2", "--json", str(tmp_path / "b2.json")]) == 0
    assert sizes == [2, 2, 1, 3, 2]
    text = capsys.readouterr().out
    assert all(f"{p}: route " in text for p in first + second) and f"{tmp_path / 'arr.npy'}[2]: route " in text
    sizes.clear()
    assert main(["run", str(tiny_bundle.path), *inputs, "--json", str(tmp_path / "b1.json")]) == 0
    assert sizes == [1] * 5 + [3] + [1] * 2  # default: one image per call, as before
    batched, single = (json.loads((tmp_path / f"{n}.json").read_text())["inputs"] for n in ("b2", "b1"))
    assert list(batched) == list(single)
    for name in single:
        assert batched[name]["routes"] == single[name]["routes"]
        np.testing.assert_allclose(batched[name]["logits"], single[name]["logits"], atol=1e-4)
    assert _rejected(["run", str(tiny_bundle.path), *inputs, "--batch", "0"])


def _rejected(argv) -> bool:
    """A non-zero exit, from the command or from argument parsing."""
    try:
        return main(argv) != 0
    except SystemExit as exc:
        return exc.code != 0


def test_run_labels_and_summary(tiny_bundle, tmp_path, capsys):
    _images(tmp_path / "imgs", 6, seed=4)
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"class-{c}" for c in "abcdefghij") + "\n")
    assert main(["run", str(tiny_bundle.path), str(tmp_path / "imgs"), "--labels", str(labels), "--top", "2",
                 "--batch", "4"]) == 0
    out = capsys.readouterr().out
    per_sample = [line for line in out.splitlines() if ": route " in line]
    assert len(per_sample) == 6 and all(line.count("class-") == 2 for line in per_sample)
    summary = out.split("\n\n")[-1]
    assert summary.startswith("6 samples; average ") and "M MAdds" in summary
    routes = [line for line in summary.splitlines() if line.strip().startswith("route ")]
    assert sum(int(line.split()[3]) for line in routes) == 6 and "%" in routes[0]
    assert "samples/s" in summary and "0 unreadable inputs skipped" in summary

    assert main(["run", str(tiny_bundle.path), str(tmp_path / "imgs" / "i0.png"), "--top", "3"]) == 0
    line = capsys.readouterr().out.splitlines()[0]  # no labels anywhere: class indices, as before
    assert "class-" not in line and line.split("top-3: ")[1][0].isdigit()
    labels.write_text("just\ntwo\n")
    assert main(["run", str(tiny_bundle.path), str(tmp_path / "imgs"), "--labels", str(labels)]) == 1
    assert "2 labels for a model with 10 classes" in capsys.readouterr().err


def test_run_json_keeps_its_format_and_adds_a_summary(tiny_bundle, tmp_path, capsys):
    _images(tmp_path / "imgs", 3)
    _bad(tmp_path / "imgs" / "zz.png")
    assert main(["run", str(tiny_bundle.path), str(tmp_path / "imgs"), "--json", "-", "--batch", "2"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)  # stdout is the JSON only
    assert set(data) == {"bundle", "inputs", "summary"}
    entry = data["inputs"][str(tmp_path / "imgs" / "i0.png")]
    assert set(entry) == {"logits", "routes", "macs", "latency_ms"} and len(entry["logits"]) == 1
    assert data["summary"]["samples"] == 3 and data["summary"]["skipped"] == 1
    assert sum(data["summary"]["routes"].values()) == 3 and "zz.png" in captured.err


def test_calibrate_skips_unreadable_images_unless_strict(tiny_bundle, tmp_path, capsys):
    import shutil

    bundle = shutil.copytree(tiny_bundle.path, tmp_path / "bundle")
    _images(tmp_path / "imgs", 8)
    _bad(tmp_path / "imgs" / "i3b.png")
    assert main(["calibrate", str(bundle), "--data", str(tmp_path / "imgs"), "--target-macs", "1M"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith(f"warning: skipped {tmp_path / 'imgs' / 'i3b.png'}: ")
    assert "8 samples: average" in captured.out and "1 unreadable image skipped" in captured.out
    assert main(["calibrate", str(bundle), "--data", str(tmp_path / "imgs"), "--target-macs", "1M",
                 "--strict"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "i3b.png" in err
