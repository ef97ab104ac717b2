"""Show what a bundle holds: preprocessing, classes, routes, widths, MAdds, parameters and file sizes
(no torch needed).  --json PATH|- writes the whole manifest, with the preprocessing, as JSON.

examples:
  python -m dsnet_export inspect engines/dsnet-digits
  python -m dsnet_export inspect engines/dsnet-digits --json -
"""

from __future__ import annotations

import argparse

from ..tables import format_table, megabytes, millions
from .options import Output, add_bundle_argument, add_output_group

NAME = "inspect"
HELP = "print a bundle's routes, widths, MAdds, params and files"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_bundle_argument(p.add_argument_group("inputs"))
    add_output_group(p, "the manifest (every field) and the preprocessing")


def run(args: argparse.Namespace) -> int:
    from ..imaging import Preprocessing
    from ..runtime import load_bundle

    bundle = load_bundle(args.bundle, verify=False)
    m = bundle.manifest
    out = Output(args)
    prep = Preprocessing.from_manifest(m.input).describe()
    out.report(f"{m.name}: {m.arch['name']} bundle (schema {m.schema_version}, built by {m.tool} {m.tool_version})")
    out.report(f"input {m.input.name}: N x {' x '.join(map(str, m.input.shape))} {m.input.dtype} {m.input.layout}")
    out.report(f"preprocessing (run, eval, calibrate, the sample app; as in training): {prep}")
    classes = int(m.arch["num_classes"])
    names = ", ".join(m.labels[:10]) + (" ..." if len(m.labels) > 10 else "") if m.labels else "not recorded"
    out.report(f"classes: {classes} (names: {names})")
    if m.source.get("training_data"):
        out.report(f"trained on: {m.source['training_data']} (split seed {m.source.get('split_seed', '?')})")
    out.report(f"gate {m.gate.file}: features N x {' x '.join(map(str, m.gate.features_shape))}, "
               f"{len(m.gate.routes)} routes, {millions(m.gate.macs)} MAdds before the routes\n")
    rows = [[r.index, r.name, r.kind, "-" if r.gate_index is None else r.gate_index, "/".join(map(str, r.widths)),
             millions(r.macs), millions(r.params), r.file, megabytes(m.files[r.file].size)] for r in m.routes]
    out.report(format_table(["route", "name", "kind", "gate out", "widths", "MAdds", "params", "file", "size"], rows))
    out.report()
    out.report(format_table(["file", "size", "sha256"],
                            [[name, megabytes(e.size), e.sha256[:16]] for name, e in sorted(m.files.items())]))
    weights = megabytes(m.files[m.weights].size)
    out.report(f"\nweights per backend: ort maps {m.weights} ({weights}) once and every engine reads it; trt plans "
               f"are refitted from it (full plans built with --full-plans carry a copy each); openvino compiles each "
               f"engine with its own copy of the slices it uses")
    out.json({"bundle": str(bundle.root), "preprocessing": prep, "manifest": m.to_dict()})
    return 0
