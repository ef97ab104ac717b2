"""The Jetson sample app and the minimal dispatcher example, run on the CPU (--backend ort)."""

import re
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


@pytest.fixture(scope="module")
def digits_bundle(tmp_path_factory):
    """The embedded default digits model as `python -m dsnet_export build` exports it: trained, so its gate
    really routes (routes 0 and 3 on the digits test split, README), unlike the random tiny model's."""
    from dsnet_export.export import build_bundle

    return build_bundle(out=tmp_path_factory.mktemp("digits") / "dsnet-digits", progress=False)


def _frame_routes(stdout):
    """The route index of each frame, in order, from the app's per-frame lines."""
    return [int(m.group(1)) for m in re.finditer(r"\) route (\d+) ", stdout)]


def _summary_average(stdout):
    return float(stdout.split("frames; average ")[1].split("M")[0]) * 1e6


def test_budget_moves_the_average_macs_to_the_target(digits_bundle, digits, tmp_path):
    # 16 digits of the test split, three times over, as a folder of frames.  The app refits the gate bias every
    # 16 frames on the gate logits it has seen, so from frame 16 on every refit sees these same 16 frames.
    folder = tmp_path / "digits"
    folder.mkdir()
    images = np.round(digits.test.images[:16].transpose(0, 2, 3, 1) * 255).astype(np.uint8)
    for i in range(48):
        cv2.imwrite(str(folder / f"{i:03d}.png"), images[i % 16])
    macs = [r.macs for r in digits_bundle.manifest.routes]

    free = _classify(digits_bundle.path, folder, "display://0")
    assert free.returncode == 0, free.stderr
    free_routes = _frame_routes(free.stdout)
    assert len(free_routes) == 48 and free_routes[:16] == free_routes[16:32] == free_routes[32:]
    assert len(set(free_routes)) >= 2, "the frames must spread over routes, or no budget can change anything"
    free_average = np.mean([macs[k] for k in free_routes])
    assert _summary_average(free.stdout) == pytest.approx(free_average, abs=0.005e6)

    target = (free_average + min(macs)) / 2  # half-way down to the cheapest route
    budgeted = _classify(digits_bundle.path, folder, "display://0", "--budget", str(int(target)))
    assert budgeted.returncode == 0, budgeted.stderr
    routes = _frame_routes(budgeted.stdout)
    assert len(routes) == 48 and routes[:16] == free_routes[:16]  # no bias before the first refit
    refitted = np.mean([macs[k] for k in routes[16:]])
    # Once refitted, the stream is at or under the target, and not simply all on the cheapest route.
    assert min(macs) < refitted <= target
    average = _summary_average(budgeted.stdout)
    assert average == pytest.approx(np.mean([macs[k] for k in routes]), abs=0.005e6)
    assert target < average < free_average and abs(average - target) < abs(free_average - target)


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
