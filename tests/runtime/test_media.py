"""Media sources and sinks: one decoder for run and the sample app, unreadable images, output names, no GUI."""

import cv2
import numpy as np
import pytest
from PIL import Image

from dsnet_export import DsnetError
from dsnet_export.imaging import Preprocessing
from dsnet_export.media import open_sink, open_source
from dsnet_export.runtime.inputs import iter_inputs
from dsnet_export.runtime.manifest import InputInfo

# A resize + centre crop, so a wrongly oriented image gives a different crop.
SPEC = InputInfo(name="image", shape=[3, 24, 24], layout="NCHW", dtype="float32", mean=[0.5, 0.4, 0.3],
                 std=[0.2, 0.2, 0.25], resize=28, interpolation="bilinear")


def _asymmetric(width=60, height=36) -> np.ndarray:
    """RGB uint8 with a gradient across and a block in one corner: any rotation or flip shows."""
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    image = np.concatenate([np.broadcast_to(x, (height, width, 1)), np.broadcast_to(y, (height, width, 1)),
                            np.full((height, width, 1), 40.0)], axis=2).astype(np.uint8)
    image[:8, :12] = (255, 255, 0)
    return image


def _exif_jpeg(path):
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(_asymmetric()).save(path, exif=exif, quality=95)
    return path


def _png16(path):
    values = (np.arange(36 * 50, dtype=np.uint32).reshape(36, 50) * 37 % 65536).astype(np.uint16)  # > 255
    Image.fromarray(values).save(path)  # mode I;16
    assert Image.open(path).mode.startswith("I;16") and values.max() > 255
    return path


def _unreadable(path):
    path.write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    return path


@pytest.mark.parametrize("make", [_exif_jpeg, _png16], ids=["exif-jpeg", "16-bit-png"])
def test_sample_app_and_run_preprocess_an_image_file_alike(tmp_path, make):
    path = make(tmp_path / ("photo.jpg" if make is _exif_jpeg else "depth.png"))
    prep = Preprocessing.from_manifest(SPEC)
    with open_source(str(path)) as source:
        frames = list(source)
    app = prep.frame(frames[0].image)  # the sample app: source frame -> Preprocessing.frame
    (item,) = iter_inputs([path], SPEC)  # run
    np.testing.assert_allclose(app, item.array[0], atol=1e-5)
    with open_source(str(tmp_path)) as source:  # and through a folder source
        np.testing.assert_allclose(prep.frame(next(iter(source)).image), item.array[0], atol=1e-5)
    if make is _exif_jpeg:
        assert frames[0].image.shape[:2] == (60, 36)  # upright: the EXIF rotation was applied


def test_folder_source_skips_unreadable_images_only_when_asked(tmp_path):
    Image.fromarray(_asymmetric()).save(tmp_path / "a.png")
    _unreadable(tmp_path / "b.png")
    Image.fromarray(_asymmetric()).save(tmp_path / "c.png")
    with open_source(str(tmp_path)) as source, pytest.raises(DsnetError, match="b.png: not a readable image"):
        list(source)
    seen = []
    with open_source(str(tmp_path), on_error=lambda name, exc: seen.append((name, str(exc)))) as source:
        frames = list(source)
    assert [f.key for f in frames] == ["a", "c"]
    assert [name for name, _ in seen] == [str(tmp_path / "b.png")] and "not a readable image" in seen[0][1]
    with pytest.raises(DsnetError, match="not a readable image"):  # one named image: nothing else to show
        with open_source(str(tmp_path / "b.png"), on_error=lambda *a: None) as source:
            list(source)


def test_frame_keys_and_folder_sink_give_every_frame_its_own_file(tmp_path):
    images = tmp_path / "in"
    for sub in ("a", "b"):
        (images / sub).mkdir(parents=True)
        Image.fromarray(_asymmetric()).save(images / sub / "x.png")
    Image.fromarray(_asymmetric()).save(images / "a" / "x.jpg")  # same stem as a/x.png
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()

    with open_source(str(images)) as source, open_sink(str(tmp_path / "out_images")) as sink:
        frames = list(source)
        for frame in frames:
            sink.write(frame.image, frame.key)
    assert [f.name for f in frames] == [str(images / "a" / "x.jpg"), str(images / "a" / "x.png"),
                                        str(images / "b" / "x.png")]
    assert [f.key for f in frames] == ["a/x", "a/x", "b/x"]
    out = tmp_path / "out_images"
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg"))
    assert written == ["a/x-2.jpg", "a/x.jpg", "b/x.jpg"]

    with open_source(str(video)) as source, open_sink(str(tmp_path / "out_video")) as sink:
        frames = list(source)
        for frame in frames:
            sink.write(frame.image, frame.key)
    assert [f.name for f in frames] == [f"{video}#{i}" for i in range(5)]
    assert sorted(p.name for p in (tmp_path / "out_video").iterdir()) == [f"clip_{i:06d}.jpg" for i in range(5)]


@pytest.mark.parametrize("display", [None, ":0"], ids=["no-DISPLAY", "headless-opencv"])
def test_window_output_falls_back_to_headless_without_a_gui(monkeypatch, capsys, display):
    # opencv-python-headless is what is installed here: cv2.imshow raises "The function is not implemented".
    for name in ("DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    if display:
        monkeypatch.setenv("DISPLAY", display)
    frame = np.zeros((32, 32, 3), np.uint8)
    with open_sink("display://0") as sink:
        sink.write(frame, "f0")
        sink.write(frame, "f1")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: display://0: ") and "headless" in err
