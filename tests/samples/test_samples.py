"""The Jetson sample app and the minimal dispatcher example, run on the CPU (--backend ort)."""

import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import ROOT, structured_inputs

CLASSIFY = ROOT / "samples" / "jetson" / "classify.py"
EXAMPLE = ROOT / "samples" / "ort_dispatcher" / "example.py"


def _frames(n=12, size=96):
    """Colour frames with varying content (upscaled structured noise), BGR uint8."""
    x = structured_inputs(n, seed=4)
    images = []
    for sample in x:
        img = np.clip((sample.transpose(1, 2, 0) * 40 + 128), 0, 255).astype(np.uint8)
        images.append(cv2.resize(img, (size, size), interpolation=cv2.INTER_NEAREST))
    return images


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("media") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 96))
    for frame in _frames():
        writer.write(frame)
    writer.release()
    return path


def _classify(*args, headless=True):
    return subprocess.run([sys.executable, str(CLASSIFY), *map(str, args), "--backend", "ort",
                           *(["--headless"] if headless else [])], capture_output=True, text=True, timeout=300)


def test_video_in_video_out(tiny_bundle, video, tmp_path):
    out = tmp_path / "annotated.avi"
    done = _classify(tiny_bundle.path, video, out)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sum(line.startswith(f"{video}#") and " route " in line for line in lines) == 12
    assert "12 frames; average" in done.stdout and "mean latency" in done.stdout
    capture = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == 12
    assert frames[0].shape[:2] == (288, 288)  # 96x96 frames enlarged 3x so the text is legible
    original = cv2.resize(_frames()[0], (288, 288), interpolation=cv2.INTER_NEAREST)
    assert frames[0][:20].mean() < original[:20].mean()  # the overlay band darkens the top


def test_image_folder_in_folder_out_with_labels(tiny_bundle, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, frame in enumerate(_frames(5)):
        cv2.imwrite(str(folder / f"f{i}.png"), frame)
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"digit-{i}" for i in range(10)))
    done = _classify(tiny_bundle.path, folder, tmp_path / "out", "--labels", labels)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"f{i}.jpg" for i in range(5)]
    assert "digit-" in done.stdout and "5 frames" in done.stdout


def test_video_to_a_folder_writes_one_file_per_frame(tiny_bundle, video, tmp_path):
    done = _classify(tiny_bundle.path, video, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"clip_{i:06d}.jpg" for i in range(12)]


def test_folder_with_sub_folders_and_an_unreadable_image(tiny_bundle, tmp_path):
    folder = tmp_path / "images"
    frames = _frames(3)
    for sub, frame in zip("ab", frames):
        (folder / sub).mkdir(parents=True)
        cv2.imwrite(str(folder / sub / "x.png"), frame)  # same file name in two sub-folders
    cv2.imwrite(str(folder / "c.png"), frames[2])
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    done = _classify(tiny_bundle.path, folder, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.jpg"))
    assert written == ["a/x.jpg", "b/x.jpg", "c.jpg"]
    assert done.stderr.splitlines() == [done.stderr.strip()] and \
        done.stderr.startswith(f"warning: skipped {folder / 'broken.png'}: not a readable image")
    assert sum(line.startswith(f"{folder}/") and " route " in line for line in done.stdout.splitlines()) == 3
    assert "3 frames; average" in done.stdout and "1 unreadable input skipped" in done.stdout

    strict = _classify(tiny_bundle.path, folder, tmp_path / "strict", "--strict")
    assert strict.returncode == 1 and strict.stderr.count("\n") == 1
    assert strict.stderr.startswith("error: ") and "broken.png" in strict.stderr and "Traceback" not in strict.stderr


def test_default_window_output_without_a_gui_runs_headless(tiny_bundle, video):
    # opencv-python-headless here: cv2.imshow raises; the app must warn once and go on.
    done = _classify(tiny_bundle.path, video, headless=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("warning: display://0: ")
    assert "12 frames; average" in done.stdout


def test_budget_lowers_the_average_macs(tiny_bundle, video):
    free = _classify(tiny_bundle.path, video, "display://0")
    routes = [r.macs for r in tiny_bundle.manifest.routes]
    budgeted = _classify(tiny_bundle.path, video, "display://0", "--budget", str(routes[0]))
    assert free.returncode == 0 and budgeted.returncode == 0, budgeted.stderr

    def average(text):
        return float(text.split("frames; average ")[1].split("M")[0])

    assert average(budgeted.stdout) <= average(free.stdout)


def test_bad_input_is_a_clear_error(tiny_bundle, tmp_path):
    done = _classify(tiny_bundle.path, tmp_path / "missing.mp4")
    assert done.returncode != 0 and "no such file" in done.stderr and "Traceback" not in done.stderr
    done = _classify(tiny_bundle.path, "v4l2://7")
    assert done.returncode != 0 and "could not open" in done.stderr


def test_ort_dispatcher_example(tiny_bundle, tmp_path):
    np.save(tmp_path / "batch.npy", structured_inputs(4))
    done = subprocess.run([sys.executable, str(EXAMPLE), str(tiny_bundle.path), str(tmp_path / "batch.npy")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [line.split(":")[0].endswith(f"batch.npy[{i}]") for i, line in enumerate(done.stdout.splitlines())] \
        == [True] * 4
    assert "MAdds" in done.stdout
