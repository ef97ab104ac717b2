"""Writing a Triton Inference Server model repository for a bundle.

The repository holds one model per engine -- ``gate`` and ``route_<k>`` for every manifest route, each with
dynamic batching -- and the ``dsnet`` routing model: a Python-backend model that Triton hands a list of queued
requests; it runs the gate once on all their images, groups the rows by the route the gate chose (``RouteTable``,
the dispatcher's rule) and calls each route model once per group, concurrently, through BLS.

Engine models come in three kinds (``engines=``):

* ``onnxruntime``: the ``onnxruntime_onnx`` platform on ``model.onnx``.  The ONNX files keep their external data
  in the bundle's one weights file: each version directory holds hard links to the bundle's engine and weights
  files (no copy).  ONNX Runtime refuses external data reached through a symbolic link that leaves the model's
  directory, so a symlink is no option; when the repository is on another file system than the bundle, the
  weights are copied once into the repository and every model hard-links that one copy.
* ``tensorrt``: the ``tensorrt_plan`` platform on the full (not weight-stripped) plans that ``build-trt
  --full-plans`` recorded in the bundle, linked the same way.
* ``python``: Python-backend models that run the bundle's own files with dsnet-export's ONNX Runtime backend
  in-process (one memory-mapped copy of the weights per process); for servers with only the Python backend.

Every model records the bundle's absolute path as the config parameter ``bundle``: the repository refers to the
bundle, it does not copy it.  The Python models' ``model.py`` is a small shim that imports its implementation
from ``dsnet_export.serving.triton.models``, so dsnet-export (numpy, onnxruntime) must be importable by the
server's Python; the shim also adds the site-packages of the interpreter that wrote the repository when the
server's Python is the same version (the stub of the ``nvidia-pytriton`` server ignores ``PYTHONPATH``).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import site
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from ...arch import RouteKind
from ...errors import DsnetError
from ...export.atomic import atomic_directory
from ...runtime.budget import BUDGET_NAME
from ...runtime.bundle import Bundle, load_bundle
from ...runtime.manifest import Manifest, TrtPlans
from ..routing import RouteTable

ENGINES = ("onnxruntime", "tensorrt", "python")
#: The file at the top of every repository this module wrote (what makes it replaceable).
MARKER = "dsnet_repository.json"
GATE_MODEL = "gate"
VERSION = "1"


@dataclass
class Repository:
    """What ``write_repository`` wrote: the repository, its models and how the weights got there."""

    path: Path
    bundle: Path
    engines: str
    router: str
    models: list[str]
    #: "hardlink" (the bundle's files linked), "copied-once" (weights copied once, other file system), "none"
    weights: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"path": str(self.path), "bundle": str(self.bundle), "engines": self.engines, "router": self.router,
                "models": self.models, "weights": self.weights, "notes": self.notes}


def route_model_name(index: int) -> str:
    return f"route_{index}"


def write_repository(bundle_dir: str | os.PathLike, out: str | os.PathLike, *, engines: str = "onnxruntime",
                     max_batch: int = 8, max_queue_delay_us: int = 500, instances: int = 1,
                     budget: bool | str | os.PathLike | None = None, name: str = "dsnet",
                     trt_tag: str | None = None, python_path: list[str] | None = None,
                     threads: int | None = 1) -> Repository:
    """Write a Triton model repository for the bundle at ``bundle_dir`` into ``out`` (atomically).

    ``engines``: onnxruntime | tensorrt | python (see the module).  ``max_batch``: every model's
    ``max_batch_size`` (for tensorrt at most the plans' max batch).  ``max_queue_delay_us``: the longest a
    request waits in a dynamic-batching queue for others.  ``instances``: instances of every engine model (and
    of the routing model).  ``budget``: a gate bias from ``calibrate``, True for ``<bundle>/budget.json`` or a
    path (as ``Dispatcher.load`` takes it).  ``name``: the routing model's name.  ``trt_tag``: which device's
    plans (default: the only one recorded).  ``python_path``: folders the Python models add to ``sys.path``
    (default: this interpreter's site-packages and the folder dsnet_export is imported from).  ``threads``: ONNX
    Runtime threads per session of the Python engine models (None: ONNX Runtime's default, one per core).  Every
    model instance is a process of its own, so 1 (scaled with ``instances``) avoids oversubscribing the cores:
    measured on 2 cores, 1 thread halved a single request's latency against the default.

    ``out`` must not exist, be empty, or be a repository this function wrote (it is then replaced whole)."""
    if engines not in ENGINES:
        raise DsnetError(f"engines={engines!r}: choose one of {', '.join(ENGINES)}")
    for label, value, low in (("max_batch", max_batch, 1), ("max_queue_delay_us", max_queue_delay_us, 0),
                              ("instances", instances, 1), ("threads", 1 if threads is None else threads, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise DsnetError(f"{label}= must be an integer >= {low}, got {value!r:.40}")
    if not name or not all(c.isalnum() or c in "-_" for c in name) or name == GATE_MODEL or name.startswith("route_"):
        raise DsnetError(f"name={name!r:.60}: a routing model name of letters, digits, '-' and '_', other than "
                         f"{GATE_MODEL!r} and route_<k>")
    bundle = load_bundle(bundle_dir, verify=True)
    root = bundle.root.resolve()
    m = bundle.manifest
    budget_path = _budget_path(bundle, budget)
    RouteTable.from_bundle(bundle, budget_path)  # the bias must load now, not in the server
    plans = _plans(m, trt_tag, max_batch) if engines == "tensorrt" else None
    if python_path is None:
        python_path = _python_path()

    target = Path(out).absolute()
    # Built beside the target and swapped in atomically, under the target's lock (as bundles are).
    with atomic_directory(target, not_ours=_not_a_repository,
                          what="a model repository written by dsnet-export") as work:
        weights_mode = "none"
        common = {"bundle": str(root), "python_path": json.dumps(python_path),
                  "python_version": f"{sys.version_info[0]}.{sys.version_info[1]}"}
        linker = _Linker(root, m.weights)
        models = [GATE_MODEL] + [route_model_name(r.index) for r in m.routes]
        for model in models:
            route = None if model == GATE_MODEL else m.routes[int(model.split("_")[1])]
            folder = work / model / VERSION
            folder.mkdir(parents=True)
            inputs, outputs = _engine_io(m, route)
            params = dict(common, engine="gate" if route is None else "route",
                          route="" if route is None else str(route.index), threads=str(threads or ""))
            engine_file = m.gate.file if route is None else route.file
            if engines == "python":
                (folder / "model.py").write_text(ENGINE_SHIM)
                config = model_config(model, backend="python", max_batch=max_batch, inputs=inputs, outputs=outputs,
                                      delay_us=max_queue_delay_us, instances=instances, kind="KIND_CPU",
                                      parameters=params)
            elif engines == "onnxruntime":
                linker.link(engine_file, folder / "model.onnx")
                weights_mode = linker.link_weights(folder / m.weights)
                config = model_config(model, platform="onnxruntime_onnx", max_batch=max_batch, inputs=inputs,
                                      outputs=outputs, delay_us=max_queue_delay_us, instances=instances,
                                      parameters={"bundle": str(root), "engine_file": engine_file})
            else:
                linker.link(plans.plans[engine_file], folder / "model.plan")
                params = {"bundle": str(root), "plan": plans.plans[engine_file], "trt_tag": plans.tag}
                config = model_config(model, platform="tensorrt_plan", max_batch=max_batch, inputs=inputs,
                                      outputs=outputs, delay_us=max_queue_delay_us, instances=instances,
                                      kind="KIND_GPU", parameters=params)
            (work / model / "config.pbtxt").write_text(config)
        (work / name / VERSION).mkdir(parents=True)
        (work / name / VERSION / "model.py").write_text(ROUTER_SHIM)
        router_params = dict(common, budget=str(budget_path or ""), gate_model=GATE_MODEL,
                             route_models=json.dumps({str(r.index): route_model_name(r.index) for r in m.routes}),
                             engine_max_batch=str(max_batch))
        (work / name / "config.pbtxt").write_text(model_config(
            name, backend="python", max_batch=max_batch,
            inputs=[(m.input.name, "TYPE_FP32", list(m.input.shape), None)],
            outputs=[("logits", "TYPE_FP32", [int(m.arch["num_classes"])], None), ("routes", "TYPE_INT64", [1], [])],
            delay_us=max_queue_delay_us, instances=instances, kind="KIND_CPU", parameters=router_params))
        notes = []
        if weights_mode == "copied-once":
            notes.append(f"{target} is on another file system than {root}: the weights were copied once into the "
                         f"repository and hard-linked into every model")
        record = {"tool": "dsnet-export", "bundle": str(root), "bundle_name": m.name, "engines": engines,
                  "router": name, "models": [*models, name], "max_batch": max_batch,
                  "max_queue_delay_us": max_queue_delay_us, "instances": instances,
                  "budget": str(budget_path or ""), "weights": weights_mode,
                  "weights_sha256": m.files[m.weights].sha256, "trt_tag": plans.tag if plans else None}
        (work / MARKER).write_text(json.dumps(record, indent=1) + "\n")
    return Repository(target, root, engines, name, [*models, name], weights_mode, notes)


# -- config.pbtxt --------------------------------------------------------------------------------------------------
Tensor = tuple  # (name, data type, dims, reshape dims or None)


def model_config(name: str, *, max_batch: int, inputs: list[Tensor], outputs: list[Tensor], delay_us: int,
                 instances: int, backend: str | None = None, platform: str | None = None, kind: str | None = None,
                 parameters: dict[str, str] | None = None) -> str:
    """A model's ``config.pbtxt`` (protobuf text format of Triton's ``ModelConfig``)."""
    lines = [f"name: {_quote(name)}"]
    lines.append(f"backend: {_quote(backend)}" if backend else f"platform: {_quote(platform)}")
    lines.append(f"max_batch_size: {max_batch}")
    for key, tensors in (("input", inputs), ("output", outputs)):
        entries = []
        for tensor_name, dtype, dims, reshape in tensors:
            entry = f"  {{\n    name: {_quote(tensor_name)}\n    data_type: {dtype}\n    dims: {_dims(dims)}\n"
            if reshape is not None:
                entry += f"    reshape: {{ shape: {_dims(reshape)} }}\n"
            entries.append(entry + "  }")
        lines.append(f"{key} [\n" + ",\n".join(entries) + "\n]")
    lines.append(f"dynamic_batching {{\n  max_queue_delay_microseconds: {delay_us}\n}}")
    group = f"count: {instances}" + (f" kind: {kind}" if kind else "")
    lines.append(f"instance_group [ {{ {group} }} ]")
    for key, value in (parameters or {}).items():
        lines.append(f"parameters {{ key: {_quote(key)} value: {{ string_value: {_quote(value)} }} }}")
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return json.dumps(str(text))  # a JSON string is a valid text-format string (escapes included)


def _dims(dims: list[int]) -> str:
    return "[ " + ", ".join(str(int(d)) for d in dims) + " ]"


def _engine_io(m: Manifest, route) -> tuple[list[Tensor], list[Tensor]]:
    """The inputs and outputs of the gate (``route`` None) or a route engine, named as in its ONNX file."""
    if route is None:
        return ([(m.gate.input, "TYPE_FP32", list(m.input.shape), None)],
                [(m.gate.features, "TYPE_FP32", list(m.gate.features_shape), None),
                 (m.gate.logits, "TYPE_FP32", [len(m.gate.routes)], None)])
    shape = m.input.shape if route.kind == RouteKind.FIXED else m.gate.features_shape
    return ([(route.input, "TYPE_FP32", list(shape), None)],
            [(route.output, "TYPE_FP32", [int(m.arch["num_classes"])], None)])


# -- inputs ---------------------------------------------------------------------------------------------------------
def _budget_path(bundle: Bundle, budget) -> Path | None:
    if budget is None or budget is False:
        return None
    path = bundle.root / BUDGET_NAME if budget is True else Path(budget)
    if not path.is_file():
        raise DsnetError(f"budget={path}: no such file (make one with: python -m dsnet_export calibrate "
                         f"{bundle.root})")
    return path.resolve()


def _plans(m: Manifest, tag: str | None, max_batch: int) -> TrtPlans:
    fix = (f"run `python -m dsnet_export build-trt <bundle> --full-plans --max-batch {max_batch}` on the target GPU "
           f"(plans are built for one GPU and TensorRT version)")
    if not m.trt:
        raise DsnetError(f"the bundle has no TensorRT plans: {fix}")
    if tag is None:
        if len(m.trt) > 1:
            raise DsnetError(f"the bundle has plans for several devices ({', '.join(p.tag for p in m.trt)}); "
                             f"choose one with trt_tag=")
        plans = m.trt[0]
    else:
        plans = m.plans_for(tag)
        if plans is None:
            raise DsnetError(f"trt_tag={tag!r}: no such plans in the bundle (it has {', '.join(p.tag for p in m.trt)})")
    if plans.stripped:
        raise DsnetError(f"the bundle's {plans.tag} plans are weight-stripped (refitted by dsnet-export at load), "
                         f"which Triton's TensorRT backend cannot do: {fix}")
    if plans.max_batch < max_batch:
        raise DsnetError(f"max_batch={max_batch} is more than the {plans.tag} plans take ({plans.max_batch}); use "
                         f"max_batch={plans.max_batch} or {fix}")
    return plans


def _python_path() -> list[str]:
    """Where this interpreter finds dsnet_export and its dependencies (for the server's Python stub)."""
    import dsnet_export

    paths = [str(Path(dsnet_export.__file__).resolve().parents[1])]
    for p in [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()]:
        if p not in paths and Path(p).is_dir():
            paths.append(p)
    return paths


# -- files ----------------------------------------------------------------------------------------------------------
class _Linker:
    """Hard links into the repository of the bundle's files; the weights copied once when linking fails because
    the repository is on another file system."""

    def __init__(self, root: Path, weights: str):
        self.root, self.weights = root, weights
        self._copy: Path | None = None  # the repository's one copy, when one was needed

    def link(self, name: str, dest: Path) -> str:
        source = self.root / name
        try:
            os.link(source, dest)
            return "hardlink"
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise DsnetError(f"cannot link {source} into {dest.parent}: {exc.strerror or exc}") from None
        if name == self.weights:
            if self._copy is None:
                shutil.copyfile(source, dest)
                self._copy = dest
            else:
                os.link(self._copy, dest)
            return "copied-once"
        shutil.copyfile(source, dest)  # an engine graph (small): a copy per model
        return "copied-once"

    def link_weights(self, dest: Path) -> str:
        return self.link(self.weights, dest)


def _not_a_repository(target: Path) -> str | None:
    """Why ``target`` is not a repository this module wrote (None when it is)."""
    try:
        ours = json.loads((target / MARKER).read_text()).get("tool") == "dsnet-export"
    except (OSError, ValueError, AttributeError):
        ours = False
    return None if ours else f"no {MARKER} of dsnet-export"


# -- the Python models' model.py -------------------------------------------------------------------------------------
_SHIM_HEAD = '''"""Written by dsnet-export (triton-repo): the implementation is dsnet_export.serving.triton.models."""

import json
import sys


def _setup(args):
    """The model's config parameters, after adding the writer's site-packages to sys.path (same Python only)."""
    config = json.loads(args["model_config"])
    params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
    if params.get("python_version") == "%d.%d" % sys.version_info[:2]:
        for path in reversed(json.loads(params.get("python_path", "[]"))):
            if path not in sys.path:
                sys.path.insert(0, path)
    return config, params
'''

ENGINE_SHIM = _SHIM_HEAD + '''

class TritonPythonModel:
    def initialize(self, args):
        import triton_python_backend_utils as pb_utils

        config, params = _setup(args)
        from dsnet_export.serving.triton.models import EngineModel

        self._model = EngineModel(config, params, pb_utils)

    def execute(self, requests):
        return self._model.execute(requests)

    def finalize(self):
        self._model.close()
'''

ROUTER_SHIM = _SHIM_HEAD + '''

class TritonPythonModel:
    def initialize(self, args):
        import triton_python_backend_utils as pb_utils

        config, params = _setup(args)
        from dsnet_export.serving.triton.models import RoutingModel

        self._model = RoutingModel(config, params, pb_utils)

    async def execute(self, requests):
        return await self._model.execute(requests)

    def finalize(self):
        self._model.close()
'''
