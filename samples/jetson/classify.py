#!/usr/bin/env python3
"""Classify a camera, a video or an image folder with a DS-Net bundle, showing which width each frame takes.

  python classify.py BUNDLE INPUT [OUTPUT] [--backend trt|ort] [--budget MACS] [--labels FILE] [--headless]
                     [--strict]

INPUT:  csi://0, v4l2://0 or /dev/video0, rtsp://..., a video file, an image file or a folder of images.
OUTPUT: display://0 (a window, the default; without a GUI the app warns once and runs headless), a video
        file (.mp4/.avi) or a folder (one annotated JPEG per frame, the input folder's sub-folders mirrored).
An unreadable image in a folder is skipped with a warning and counted in the summary; --strict stops instead.

examples (from the project root; the first line makes the bundle and the images the others use):
  python -m dsnet_export build && python -m training export-digits digits_test/
  python samples/jetson/classify.py engines/dsnet-digits digits_test/3 annotated/ --backend ort
  python samples/jetson/classify.py engines/dsnet-digits digits_test/ --backend ort --headless --strict
  python samples/jetson/classify.py engines/dsnet-digits csi://0   # on a Jetson, after build --trt (README)
"""

import argparse
import sys
import time

from dsnet_export import DsnetError
from dsnet_export.imaging import Preprocessing
from dsnet_export.media import draw_overlay, open_sink, open_source
from dsnet_export.runtime import Dispatcher, OnlineBudget, RunStats
from dsnet_export.runtime.budget import parse_macs
from dsnet_export.runtime.labels import bundle_labels
from dsnet_export.runtime.postprocess import top_k


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", help="bundle directory (python -m dsnet_export build ...)")
    parser.add_argument("input", help="camera, stream, video, image or folder URI")
    parser.add_argument("output", nargs="?", default="display://0", help="display://0, a video file or a folder")
    parser.add_argument("--backend", choices=["trt", "ort"], default="trt", help="TensorRT plans or ONNX Runtime")
    parser.add_argument("--budget", type=parse_macs, help="keep the average MAdds near this target, e.g. 150M")
    parser.add_argument("--labels", help="class names, one per line (default: the bundle's, or indices)")
    parser.add_argument("--headless", action="store_true", help="no window (display:// output is dropped)")
    parser.add_argument("--strict", action="store_true", help="stop at the first unreadable image")
    args = parser.parse_args(argv)

    # 1. Load the engines: gate + one dense engine per width, weights shared; the preprocessing they expect.
    dispatcher = Dispatcher.load(args.bundle, backend=args.backend)
    routes, prep = dispatcher.routes, Preprocessing.from_manifest(dispatcher.manifest.input)
    labels = bundle_labels(dispatcher.manifest, args.labels)
    gate_routes = [routes[k] for k in dispatcher.manifest.gate.routes]
    budget = OnlineBudget([r.macs for r in gate_routes], args.budget) if args.budget else None
    stats = RunStats(routes)

    # 2. Open the input (unreadable images: skipped with a warning, or fatal with --strict) and the output.
    with dispatcher, open_source(args.input, on_error=None if args.strict else stats.skip) as source, \
            open_sink(args.output, fps=source.fps, headless=args.headless) as sink:
        for frame in source:
            # 3. Preprocess the frame as the bundle's manifest says (resize, crop, normalise).
            x = prep.frame(frame.image)[None]

            # 4. Gate, then the frame's own route; time it.
            start = time.perf_counter()
            result = dispatcher(x)
            seconds = time.perf_counter() - start
            stats.add(result.routes, result.macs, seconds)

            # 5. Under a budget, refit the gate bias on what the camera has seen lately.
            if budget is not None:
                dispatcher.gate_bias = budget.update(result.gate_logits)

            # 6. Overlay: top class and score, route and width, MAdds, FPS; one output file per frame.
            (top, score), = top_k(result.logits[0], 1)
            route = routes[int(result.routes[0])]
            annotated = draw_overlay(frame.image, [f"{labels[top]} {score:.2f}",
                                                   f"route {route.index} ({route.name}, {route.widths[-1]} ch)",
                                                   f"{route.macs / 1e6:.1f}M MAdds  {1 / seconds:.0f} FPS"])
            sink.write(annotated, frame.key)
            print(f"{frame.name}: {labels[top]} ({score:.2f}) route {route.index} {route.name} "
                  f"{route.macs / 1e6:.1f}M MAdds {seconds * 1e3:.1f} ms")

    # 7. Summary: frames, route histogram, latency per route, effective MAdds, throughput, skipped images.
    print(stats.summary())
    return 1 if stats.skipped and not stats.samples else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DsnetError as exc:
        sys.exit(f"error: {exc}")
