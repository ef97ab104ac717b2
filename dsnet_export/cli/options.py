"""What every command shares: the option groups (runtime, output, TensorRT), the one place a ``Dispatcher``
is opened from the command line, the output rules, hidden deprecated aliases, and the translation of the
library's parameter names (``max_batch=``) into the flags of the command being run (``--max-batch``).

One convention for every command:

* ``--backend {ort,trt,openvino,litert}`` on every command that runs a bundle, with ``--providers``, ``--threads``,
  ``--ov-device``, ``--ov-precision`` and ``--no-verify`` where they apply (the "runtime" group);
* ``--json PATH|-`` wherever results print: ``PATH`` is written atomically, ``-`` puts the JSON on stdout
  and leaves the human-readable report out (notes go to stderr, so stdout holds the JSON only);
* ``--quiet`` everywhere: no progress bars and no notes ("wrote FILE" for side files such as ``--json`` and
  ``--png``); results, warnings and errors still print;
* a flag name means one thing in every command; an old spelling that was renamed stays as a hidden alias.

Nothing here imports torch.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import TYPE_CHECKING, Any

from ..errors import DsnetError

if TYPE_CHECKING:
    from ..runtime import Dispatcher


# -- the one place a Dispatcher is made from command-line arguments ------------------------------------------
def open_dispatcher(args: argparse.Namespace, *, bundle=None, **extra) -> Dispatcher:
    """``Dispatcher.load`` for a command's parsed arguments: ``args.bundle`` (or ``bundle``) with the runtime
    group's ``--backend``, ``--providers``, ``--threads``, ``--shared-pool`` and ``--no-verify`` (those a
    command lacks take the library defaults).  ``extra``: more ``Dispatcher.load`` keywords (``lazy``,
    ``policy``, ``budget``, ...) or overrides of the runtime flags (``backend="ort"``, ``verify=False``)."""
    from ..runtime import Dispatcher

    backend = extra.pop("backend", getattr(args, "backend", "ort"))
    extra.setdefault("verify", getattr(args, "verify", True))
    return Dispatcher.load(args.bundle if bundle is None else bundle, backend, backend_options(args, backend), **extra)


def backend_options(args: argparse.Namespace, backend: str):
    """The options object of ``backend`` from a command's runtime flags (None: that backend's defaults); a flag
    that belongs to another backend is an error."""
    ort = {"providers": getattr(args, "providers", None), "threads": getattr(args, "threads", None),
           "shared_pool": getattr(args, "shared_pool", False)}
    openvino = {"device": getattr(args, "ov_device", None), "precision": getattr(args, "ov_precision", None)}
    if backend != "openvino" and any(v is not None for v in openvino.values()):
        raise DsnetError(f"--ov-device and --ov-precision are OpenVINO options; leave them out with "
                         f"--backend {backend}")
    takes_threads = backend in ("ort", "openvino", "litert")
    if backend != "ort" and (ort["providers"] is not None or ort["shared_pool"]
                             or (ort["threads"] is not None and not takes_threads)):
        named = "--providers and --shared-pool" if takes_threads else "--providers, --threads and --shared-pool"
        raise DsnetError(f"{named} are ONNX Runtime options; leave them out with --backend {backend}")
    options = None
    if backend == "ort":
        from ..runtime.backends.ort import OrtOptions

        options = OrtOptions(**ort)
    elif backend == "openvino":
        from ..runtime.backends.openvino import OpenVinoOptions

        options = OpenVinoOptions(**{k: v for k, v in openvino.items() if v is not None}, threads=ort["threads"])
    elif backend == "litert":
        from ..runtime.backends.litert import LiteRtOptions

        options = LiteRtOptions(threads=ort["threads"])
    return options


# -- option groups ---------------------------------------------------------------------------------------------
def add_bundle_argument(group, help: str = "bundle directory (made by build)") -> None:
    group.add_argument("bundle", metavar="DIR", help=help)


def add_runtime_group(p: argparse.ArgumentParser, *, providers: bool = True, threads: bool = True,
                      verify: bool = True, backend_help: str | None = None,
                      threads_help: str | None = None) -> argparse._ArgumentGroup:
    """"runtime": ``--backend`` always; ``--providers``, ``--threads``, ``--no-verify`` unless turned off."""
    from ..runtime.backends import backend_names
    from .argtypes import thread_count

    group = p.add_argument_group("runtime", "how the bundle is run")
    names = backend_names()
    group.add_argument("--backend", choices=names, default="ort",
                       help=backend_help or "ort: ONNX Runtime; trt: the TensorRT plans built on this device with "
                                            "build-trt; openvino: OpenVINO on the bundle's ONNX engines; litert: "
                                            "the LiteRT engines export-format added (default ort)")
    if "openvino" in names:
        from ..runtime.backends.openvino.options import PRECISIONS

        group.add_argument("--ov-device", default=None, metavar="NAME",
                           help="OpenVINO device: CPU, GPU, NPU, GPU.1, AUTO:GPU,CPU ... (--backend openvino only; "
                                "default CPU)")
        group.add_argument("--ov-precision", choices=PRECISIONS, default=None,
                           help="precision OpenVINO may compute in (--backend openvino only; default f32: its own "
                                "bf16 default on recent Intel CPUs moves logits visibly)")
    if providers:
        group.add_argument("--providers", default=None, metavar="LIST",
                           help="ONNX Runtime execution providers, e.g. cpu or cuda,cpu (--backend ort only; "
                                "default cpu)")
    if threads:
        group.add_argument("--threads", type=thread_count, default=None, metavar="N",
                           help=threads_help or "intra-op threads per ONNX Runtime session (OpenVINO engine, LiteRT "
                                                "interpreter), at least 1 (--backend ort, openvino or litert; "
                                                "default: chosen per engine and call; LiteRT one per core)")
    if verify:
        group.add_argument("--no-verify", dest="verify", action="store_false",
                           help="skip the sha256 check of every bundle file on load (default: check)")
    return group


def output_group(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """An empty "output" group, for a command to add its own outputs first (then ``add_output_group``)."""
    return p.add_argument_group("output")


def add_output_group(p: argparse.ArgumentParser | argparse._ArgumentGroup, json_help: str | None = "the results",
                     quiet_help: str = "no progress bars and no 'wrote FILE' notes; results, warnings and errors "
                                       "still print") -> argparse._ArgumentGroup:
    """"output": ``--json PATH|-`` (unless ``json_help`` is None) and ``--quiet``, in a new group or in the
    group ``p`` (see ``output_group``); a command may add more outputs (``--png``) to the group returned."""
    from .argtypes import output_file_or_stdout

    group = p if isinstance(p, argparse._ArgumentGroup) else output_group(p)
    if json_help is not None:
        group.add_argument("--json", type=output_file_or_stdout, metavar="PATH|-", default=None,
                           help=f"write {json_help} as JSON to PATH, or to stdout with '-' (stdout then holds "
                                f"the JSON only; default: none)")
    group.add_argument("--quiet", action="store_true", help=f"{quiet_help} (default: off)")
    return group


def add_trt_group(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> argparse._ArgumentGroup:
    """The TensorRT plan options ``build --trt`` and ``build-trt`` share, in a new "TensorRT" group or in
    the group ``p``."""
    from .argtypes import positive_int

    group = p if isinstance(p, argparse._ArgumentGroup) else p.add_argument_group("TensorRT")
    group.add_argument("--precision", choices=["fp32", "fp16"], default="fp32", help="plan precision (default fp32)")
    group.add_argument("--max-batch", type=positive_int, default=8, metavar="N",
                       help="largest batch the plans accept (default 8)")
    group.add_argument("--opt-batch", type=positive_int, default=None, metavar="N",
                       help="batch the kernels are tuned for (default: --max-batch)")
    group.add_argument("--workspace", type=positive_int, default=1024, metavar="MiB",
                       help="builder workspace in MiB (default 1024)")
    group.add_argument("--timing-cache", metavar="PATH", default=None,
                       help="read and update a TensorRT timing cache file (default: none)")
    group.add_argument("--full-plans", dest="strip", action="store_false",
                       help="keep the weights inside the plans (no refit at load; stores them twice; "
                            "default: weight-stripped plans refitted from weights.safetensors)")
    return group


class DeprecatedAlias(argparse.Action):
    """A hidden old spelling of an option: stores into the new option's ``dest`` and prints one warning line.

    Add it after the new option (whose default then stands when neither is given)."""

    def __init__(self, option_strings, dest, *, use: str, why: str = "", **kwargs):
        kwargs.setdefault("help", argparse.SUPPRESS)
        kwargs.setdefault("default", argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)
        self.use, self.why = use, why

    def __call__(self, parser, namespace, values, option_string=None):
        command = parser.prog.split()[-1]
        print(f"warning: {command} {option_string} is deprecated; use {self.use}"
              f"{f' ({self.why})' if self.why else ''}", file=sys.stderr)
        setattr(namespace, self.dest, values)


# -- output ----------------------------------------------------------------------------------------------------
class Output:
    """Where a command's output goes, by the output group's flags.

    ``report``: the human-readable results (stdout; left out when the JSON goes to stdout).  ``note``:
    informational lines (stdout, or stderr when the JSON goes to stdout; none with ``--quiet``).
    ``json``: the machine-readable results (to the ``--json`` file, atomically, or to stdout)."""

    def __init__(self, args: argparse.Namespace):
        self.json_target: str | None = getattr(args, "json", None)
        self.quiet: bool = bool(getattr(args, "quiet", False))
        self.json_on_stdout = self.json_target == "-"

    @property
    def progress(self) -> bool:
        """Show progress bars (on stderr)."""
        return not self.quiet

    def report(self, text: str = "") -> None:
        if not self.json_on_stdout:
            print(text)

    def note(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr if self.json_on_stdout else sys.stdout)

    def json(self, data: Any) -> None:
        if self.json_target is None:
            return
        text = json.dumps(data, indent=1) + "\n"
        if self.json_on_stdout:
            sys.stdout.write(text)
        else:
            from ..files import write_text_atomic

            write_text_atomic(self.json_target, text)
            self.note(f"wrote {self.json_target}")


# -- library parameter names -> this command's flags ------------------------------------------------------------
def parameter_flags(parser: argparse.ArgumentParser, extra: dict[str, str] | None = None) -> dict[str, str]:
    """``{parameter: flag}`` for the options of ``parser`` that take a value, by their ``dest`` (the visible
    spelling wins over a hidden alias), plus ``extra`` (library parameters named otherwise, e.g.
    ``workspace_mib`` for ``--workspace``)."""
    flags: dict[str, str] = {}
    for action in parser._actions:
        longs = [s for s in action.option_strings if s.startswith("--")]
        if not longs or action.nargs == 0 or action.help == argparse.SUPPRESS or action.dest in flags:
            continue
        flags[action.dest] = longs[0]
    flags.update(extra or {})
    return flags


def flag_names(text: str, flags: dict[str, str]) -> str:
    """The library's ``name=value`` / ``name=`` spelt as the command's ``--flag value`` / ``--flag``."""
    if not flags:
        return text
    pattern = re.compile(r"(?<![\w.=-])(" + "|".join(map(re.escape, sorted(flags, key=len, reverse=True)))
                         + r")=([^\s:;,)\]]?)")
    return pattern.sub(lambda m: flags[m.group(1)] + (f" {m.group(2)}" if m.group(2) else ""), text)
