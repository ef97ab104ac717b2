#!/usr/bin/env python3
"""Classify a camera, a video or an image folder with a DS-Net bundle, showing which width each frame takes.

  python classify.py BUNDLE INPUT [OUTPUT] [--backend trt|ort] [--budget MACS] [--labels FILE] [--headless]

INPUT:  csi://0, v4l2://0 or /dev/video0, rtsp://..., a video file, an image file or a folder of images.
OUTPUT: display://0 (a window, the default), a video file (.mp4/.avi) or a folder for annotated images.
"""

import argparse
import sys
import time

from dsnet_export import DsnetError
from dsnet_export.media import draw_overlay, open_sink, open_source
from dsnet_export.runtime import Dispatcher, OnlineBudget, RunStats, load_labels
from dsnet_export.runtime.budget import parse_macs
from dsnet_export.runtime.inputs import preprocess_frame
from dsnet_export.runtime.postprocess import top_k


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", help="bundle directory (python -m dsnet_export build ...)")
    parser.add_argument("input", help="camera, stream, video, image or folder URI")
    parser.add_argument("output", nargs="?", default="display://0", help="display://0, a video file or a folder")
    parser.add_argument("--backend", choices=["trt", "ort"], default="trt", help="TensorRT plans or ONNX Runtime")
    parser.add_argument("--budget", type=parse_macs, help="keep the average MAdds near this target, e.g. 150M")
    parser.add_argument("--labels", help="class names, one per line")
    parser.add_argument("--headless", action="store_true", help="no window (display:// output is dropped)")
    args = parser.parse_args(argv)

    # 1. Load the engines: gate + one dense engine per width, weights shared.
    dispatcher = Dispatcher.load(args.bundle, backend=args.backend)
    routes = dispatcher.routes
    labels = load_labels(args.labels, int(dispatcher.manifest.arch["num_classes"]))
    gate_routes = [routes[k] for k in dispatcher.manifest.gate.routes]
    budget = OnlineBudget([r.macs for r in gate_routes], args.budget) if args.budget else None
    stats = RunStats(routes)

    # 2. Open the input and the output.
    with dispatcher, open_source(args.input) as source, \
            open_sink(args.output, fps=source.fps, headless=args.headless) as sink:
        for frame in source:
            # 3. Preprocess the frame as the bundle's manifest says (resize, crop, normalise).
            x = preprocess_frame(frame.image, dispatcher.manifest.input)[None]

            # 4. Gate, then the frame's own route; time it.
            start = time.perf_counter()
            result = dispatcher(x)
            seconds = time.perf_counter() - start
            stats.add(result.routes, result.macs, seconds)

            # 5. Under a budget, refit the gate bias on what the camera has seen lately.
            if budget is not None:
                dispatcher.gate_bias = budget.update(result.gate_logits)

            # 6. Overlay: top class and score, route and width, MAdds, FPS.
            (top, score), = top_k(result.logits[0], 1)
            route = routes[int(result.routes[0])]
            annotated = draw_overlay(frame.image, [f"{labels[top]} {score:.2f}",
                                                   f"route {route.index} ({route.name}, {route.widths[-1]} ch)",
                                                   f"{route.macs / 1e6:.1f}M MAdds  {1 / seconds:.0f} FPS"])
            sink.write(annotated, frame.name)
            print(f"{frame.name}: {labels[top]} ({score:.2f}) route {route.index} {route.name} "
                  f"{route.macs / 1e6:.1f}M MAdds {seconds * 1e3:.1f} ms")

    # 7. Summary: frames, route histogram, latency per route, effective MAdds.
    print(stats.summary())
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DsnetError as exc:
        sys.exit(f"error: {exc}")
