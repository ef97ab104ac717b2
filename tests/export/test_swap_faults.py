"""Fault injection for the bundle swap (``export.atomic``): kills, interrupts and full disks at every step.

The cases run in a driver subprocess (this file run as a script) that forks one child per case: the child
builds into ``--out`` with every file-system call of ``atomic`` counted (``mkdir``, ``open`` for writing,
``write``, ``ftruncate``, ``rename``, ``renameat2``, ``unlink``, ``rmdir``) and is SIGKILLed (or interrupted,
or given ``ENOSPC``) just before the k-th call of one phase, for every k until a run completes.  After each
case the driver checks that ``--out`` is the old or the new bundle (``load_bundle`` with hashes), or absent
when there was none (or, with the two-step swap only, that the previous bundle is recoverable), then runs
the next build, which must leave nothing behind and not touch the user's files.
"""

# Each case's closure runs at once, in a forked child, so it sees the loop's current values:
# ruff: noqa: B023

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve()
USER_FILES = {"notes.txt": b"mine", ".out.partial-userdir1/keep.txt": b"also mine"}  # decoy: pattern, no marker
USER_FILES_TOP = {rel.split("/")[0] for rel in USER_FILES}
PHASES = ("prepare", "write", "swap")


# --- the driver (runs in a subprocess: python test_swap_faults.py KIND ARGS_JSON) ----------------------


class _Inject(Exception):
    pass


class Hooks:
    """Patch ``os`` calls (as ``atomic``, ``tempfile`` and ``shutil`` use them) to count and fail."""

    def __init__(self, phase: str, k: int, action: str, modes=("any",)):
        self.phase, self.k, self.action, self.current, self.n = phase, k, action, None, 0
        self.modes = modes

    def tick(self, kind: str) -> None:
        if self.current != self.phase:
            return
        if self.action == "enospc" and kind not in ("create", "write", "rename"):
            return  # a full disk fails creating and writing, not removing
        self.n += 1
        if self.n == self.k:
            if self.action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if self.action == "interrupt":
                raise KeyboardInterrupt
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def install(self, atomic, two_step: bool) -> None:
        real = {n: getattr(os, n) for n in ("mkdir", "open", "write", "ftruncate", "rename", "replace", "unlink",
                                            "rmdir")}
        kinds = {"mkdir": "create", "write": "write", "ftruncate": "write", "rename": "rename",
                 "replace": "rename", "unlink": "remove", "rmdir": "remove"}

        def wrap(name):
            def call(*args, **kwargs):
                self.tick(kinds[name])
                return real[name](*args, **kwargs)
            return call

        for name in kinds:
            setattr(os, name, wrap(name))

        def open_(path, flags, *args, **kwargs):
            if flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR | os.O_TRUNC):
                self.tick("create")
            return real["open"](path, flags, *args, **kwargs)

        os.open = open_
        real_renameat2 = atomic._renameat2

        def renameat2(src, dst, flags):
            self.tick("rename")
            return False if two_step else real_renameat2(src, dst, flags)

        atomic._renameat2 = renameat2


def copy_into(src: Path, dst: Path) -> None:
    """The body of a build: write the files of bundle ``src`` into ``dst`` (os calls, so they count)."""
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if path.is_dir():
            os.mkdir(dst / rel)
            continue
        fd = os.open(dst / rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, path.read_bytes())
        finally:
            os.close(fd)


def fresh(parent: Path) -> Path:
    if parent.exists():
        shutil.rmtree(parent)
    parent.mkdir(parents=True)
    for rel, data in USER_FILES.items():
        (parent / rel).parent.mkdir(parents=True, exist_ok=True)
        (parent / rel).write_bytes(data)
    return parent / "out"


def fresh_case(root: Path, old: Path, had_old: bool) -> Path:
    """A fresh case directory under ``root`` with the user's files, and bundle ``old`` at the target if asked."""
    target = fresh(root / "case")
    if had_old:
        shutil.copytree(old, target)
    return target


def name_of(path: Path) -> str:
    from dsnet_export.runtime import load_bundle

    return load_bundle(path, verify=True).manifest.name


def user_files_intact(parent: Path) -> bool:
    return all((parent / rel).read_bytes() == data for rel, data in USER_FILES.items())


def expected_listing(parent: Path) -> list[str]:
    return sorted({"out", *USER_FILES_TOP})


def child(fn) -> int:
    """Run ``fn`` in a forked child; its exit status (negative: the signal that killed it)."""
    sys.stdout.flush(), sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fn()
        except KeyboardInterrupt:
            code = 3
        except OSError as exc:
            code = 5 if exc.errno == errno.ENOSPC else 6
        except BaseException:  # noqa: BLE001 - anything else is a failure the parent reports
            import traceback

            traceback.print_exc()
            code = 7
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def next_build(target: Path, new: Path, failures: list, label: str, had_leftovers: bool) -> None:
    from dsnet_export.export.atomic import atomic_directory


    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with atomic_directory(target) as tmp:
            copy_into(new, tmp)
    parent = target.parent
    if sorted(os.listdir(parent)) != expected_listing(parent):
        failures.append(f"{label}: after the next build: {sorted(os.listdir(parent))}")
    elif name_of(target) != "new" or not user_files_intact(parent):
        failures.append(f"{label}: after the next build: wrong bundle or user files touched")
    elif had_leftovers and not any("interrupted build" in str(w.message) for w in caught):
        failures.append(f"{label}: leftovers removed without a warning")


def check_after(target: Path, had_old: bool, two_step: bool, failures: list, label: str) -> str:
    """The state right after a failed build: 'old', 'new', 'absent' or 'stranded' (recoverable)."""
    from dsnet_export.export.atomic import stranded_bundle

    if not user_files_intact(target.parent):
        failures.append(f"{label}: user files touched")
    if os.path.lexists(target):
        try:
            state = name_of(target)
        except Exception as exc:  # noqa: BLE001
            failures.append(f"{label}: --out is not a valid bundle: {exc}")
            return "broken"
        if state == "old" and not had_old:
            failures.append(f"{label}: an old bundle appeared")
        return state
    if not had_old:
        return "absent"
    stranded = stranded_bundle(target)
    if not two_step or stranded is None or name_of(stranded) != "old":
        failures.append(f"{label}: --out is gone and the previous bundle is not recoverable")
    try:
        name_of(target)
    except Exception as exc:  # noqa: BLE001 - the message must say where the previous bundle is
        if f"the previous bundle is at {stranded}" not in str(exc):
            failures.append(f"{label}: loading --out does not say where the previous bundle is: {exc}")
    return "stranded"


def leftovers(parent: Path) -> bool:
    """Anything beside the target and the user's files (a missing target is not a leftover)."""
    return bool(set(os.listdir(parent)) - set(expected_listing(parent)))


def work_dirs_left(parent: Path) -> bool:
    """A killed build's work directory (what the next build must warn about; a stale lock file it reuses)."""
    return bool({n for n in os.listdir(parent) if n.startswith(".out.partial-")} - set(USER_FILES_TOP))


def hooked_build(hooks: Hooks, two_step: bool, target: Path, new: Path) -> None:
    """One build of ``target`` (the files of bundle ``new``) with ``hooks`` told which phase it is in."""
    from dsnet_export.export import atomic

    hooks.install(atomic, two_step)
    hooks.current = "prepare"
    with atomic.atomic_directory(target) as tmp:
        hooks.current = "write"
        copy_into(new, tmp)
        hooks.current = "swap"
    hooks.current = None


def drive_faults(args: dict) -> dict:
    """Kill or interrupt a build at every step of every phase, in every scenario."""
    from dsnet_export.export import atomic

    old, new, root = Path(args["old"]), Path(args["new"]), Path(args["work"])
    failures: list[str] = []
    counts: dict[str, int] = {}
    states: dict[str, int] = {}
    scenarios = args["scenarios"]
    for phase in args["phases"]:
        for action in args["actions"]:
            for two_step in (False, True):
                for scenario in scenarios:
                    k = 0
                    while True:
                        k += 1
                        label = f"{phase}/{action}/{'two-step' if two_step else 'exchange'}/{scenario}/k={k}"
                        had_old = "old" in scenario.split("+")
                        target = fresh_case(root, old, had_old)
                        for part in scenario.split("+"):  # leftover@N: an earlier build killed at write N
                            if not part.startswith("leftover"):
                                continue

                            at = int(part.partition("@")[2] or 3)

                            def killed_mid_write(at=at):
                                hooks = Hooks("write", at, "kill")
                                hooks.install(atomic, two_step)
                                with atomic.atomic_directory(target) as tmp:
                                    hooks.current = "write"
                                    copy_into(new, tmp)
                            child(killed_mid_write)
                        if "lock" in scenario:
                            (target.parent / ".out.lock").write_text("12345\n")  # a killed build's lock file

                        status = child(lambda: hooked_build(Hooks(phase, k, action), two_step, target, new))
                        if status == 0:
                            if name_of(target) != "new" or leftovers(target.parent):
                                failures.append(f"{label}: a completed build left {sorted(os.listdir(target.parent))}")
                            break
                        expected = -signal.SIGKILL if action == "kill" else 3
                        if status != expected:
                            failures.append(f"{label}: child ended with {status}, expected {expected}")
                            break
                        key = f"{action}:{phase}:{k}"
                        counts[key] = counts.get(key, 0) + 1
                        state = check_after(target, had_old, two_step, failures, label)
                        states[state] = states.get(state, 0) + 1
                        next_build(target, new, failures, label, work_dirs_left(target.parent))
                        if k > 200:
                            failures.append(f"{label}: never completes")
                            break
    return {"failures": failures, "counts": counts, "states": states}


def drive_enospc(args: dict) -> dict:
    """A full disk at the k-th creating/writing call of each phase: old bundle intact, nothing left."""

    old, new, root = Path(args["old"]), Path(args["new"]), Path(args["work"])
    failures: list[str] = []
    counts: dict[str, int] = {}
    for phase in PHASES:
        for two_step in (False, True):
            for had_old in (True, False):
                k = 0
                while True:
                    k += 1
                    label = f"enospc/{phase}/{'two-step' if two_step else 'exchange'}/old={had_old}/k={k}"
                    target = fresh_case(root, old, had_old)

                    status = child(lambda: hooked_build(Hooks(phase, k, "enospc"), two_step, target, new))
                    if status == 0:
                        break
                    if status != 5:
                        failures.append(f"{label}: child ended with {status}, expected ENOSPC")
                        break
                    counts[f"{phase}:{k}"] = counts.get(f"{phase}:{k}", 0) + 1
                    want = expected_listing(target.parent) if had_old else sorted(
                        set(expected_listing(target.parent)) - {"out"})
                    if sorted(os.listdir(target.parent)) != want:
                        failures.append(f"{label}: left {sorted(os.listdir(target.parent))}")
                    elif had_old and name_of(target) != "old":
                        failures.append(f"{label}: the old bundle changed")
                    elif not user_files_intact(target.parent):
                        failures.append(f"{label}: user files touched")
    return {"failures": failures, "counts": counts}


def drive_concurrent(args: dict) -> dict:
    """Two builds of one target at once: serialised (both wait) or one fails with BuildLockedError."""
    from dsnet_export.errors import DsnetError
    from dsnet_export.export import atomic

    old, new, root = Path(args["old"]), Path(args["new"]), Path(args["work"])
    failures: list[str] = []
    runs = {"serialised": 0, "refused": 0}
    for i in range(args["pairs"]):
        target = fresh(root / "case")
        if i % 2:
            shutil.copytree(old, target)
        no_wait = i % 3 == 2
        ready = root / "ready"

        def build(wait: bool, delay: float):
            def run():
                try:
                    with atomic.atomic_directory(target, wait=wait) as tmp:
                        copy_into(new, tmp)
                        time.sleep(delay)
                except atomic.BuildLockedError:
                    os._exit(4)
                except DsnetError:
                    os._exit(8)
            return run

        pids = []
        for j, wait in enumerate((True, not no_wait)):
            if j:
                time.sleep(0.05)  # the first one holds the lock by now
            pid = os.fork()
            if pid == 0:
                code = child(build(wait, 0.3 if j == 0 else 0.0))
                os._exit(code)
            pids.append(pid)
        codes = [os.WEXITSTATUS(os.waitpid(p, 0)[1]) for p in pids]
        if codes == [0, 0]:
            runs["serialised"] += 1
        elif no_wait and codes == [0, 4]:
            runs["refused"] += 1
        else:
            failures.append(f"pair {i}: exit codes {codes}")
        if sorted(os.listdir(target.parent)) != expected_listing(target.parent) or name_of(target) != "new":
            failures.append(f"pair {i}: left {sorted(os.listdir(target.parent))}")
        ready.unlink(missing_ok=True)
    return {"failures": failures, "runs": runs}


def drive_real_build(args: dict) -> dict:
    """Kill a real ``build_bundle`` (tiny model, no parity check) at every boundary of its writes."""
    import onnx

    import dsnet_export.export.build as build_module
    from dsnet_export import load_supernet
    from dsnet_export.export import build_bundle

    model = load_supernet(args["checkpoint"])
    old, root = Path(args["old"]), Path(args["work"])
    failures: list[str] = []
    counts: dict[str, int] = {}
    steps = {"write_weights": build_module, "_write_manifest": build_module, "load_bundle": build_module,
             "carry_over_budget": build_module, "save_model": onnx}
    for had_old in (True, False):
        k = 0
        while True:
            k += 1
            label = f"real-build/old={had_old}/k={k}"
            target = fresh_case(root, old, had_old)

            def build():
                hooks = Hooks("write", k, "kill")
                for name, module in steps.items():
                    real = getattr(module, name)

                    def wrapped(*a, _real=real, **kw):
                        hooks.tick("write")
                        result = _real(*a, **kw)
                        hooks.tick("write")
                        return result
                    setattr(module, name, wrapped)
                hooks.current = "write"
                build_bundle(model=model, out=target, progress=False, check=False, name="new")

            status = child(build)
            if status == 0:
                break
            if status != -signal.SIGKILL:
                failures.append(f"{label}: child ended with {status}")
                break
            counts[str(k)] = counts.get(str(k), 0) + 1
            check_after(target, had_old, False, failures, label)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                build_bundle(model=model, out=target, progress=False, check=False, name="new")
            if sorted(os.listdir(target.parent)) != expected_listing(target.parent) or name_of(target) != "new":
                failures.append(f"{label}: after the next build: {sorted(os.listdir(target.parent))}")
    return {"failures": failures, "counts": counts}


if __name__ == "__main__":
    kind, payload = sys.argv[1], json.loads(sys.argv[2])
    result = {"faults": drive_faults, "enospc": drive_enospc, "concurrent": drive_concurrent,
              "real": drive_real_build}[kind](payload)
    print(json.dumps(result))
    sys.exit(0)


# --- the tests ---------------------------------------------------------------------------------------

import pytest  # noqa: E402

from dsnet_export import DsnetError  # noqa: E402

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the fault injection forks")


@pytest.fixture(scope="module")
def two_bundles(tiny_model, tmp_path_factory):
    from dsnet_export.export import build_bundle

    root = tmp_path_factory.mktemp("swap")
    build_bundle(model=tiny_model, out=root / "old", progress=False, check=False, name="old")
    build_bundle(model=tiny_model, out=root / "new", progress=False, check=False, name="new")
    return root / "old", root / "new"


#: Ten states of the target's directory holding a previous bundle (so each step of its swap is killed ten
#: times on each swap path), and three without one.  leftover@N: an earlier build of it was killed at write N.
SCENARIOS = ["old", "old+lock", *(f"old+leftover@{n}" for n in range(1, 7)), "old+leftover@2+lock",
             "old+leftover@5+lock", "none", "none+leftover@3", "none+lock"]


def _drive(kind: str, args: dict, timeout: float = 120) -> dict:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(HERE), kind, json.dumps(args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=HERE.parents[2])
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _per_step(counts: dict[str, int], prefix: str) -> dict[int, int]:
    steps: dict[int, int] = {}
    for key, n in counts.items():
        if key.startswith(prefix):
            k = int(key.rsplit(":", 1)[1])
            steps[k] = steps.get(k, 0) + n
    return steps


def test_killed_at_every_step_of_the_swap(two_bundles, tmp_path):
    old, new = two_bundles
    result = _drive("faults", {"old": str(old), "new": str(new), "work": str(tmp_path), "phases": ["swap"],
                               "actions": ["kill"], "scenarios": SCENARIOS}, timeout=600)
    assert result["failures"] == [], "\n".join(result["failures"])
    killed = _per_step(result["counts"], "kill:swap:")
    print(f"\nswap: {sum(killed.values())} kills at {len(killed)} steps {killed}; states after {result['states']}")
    assert len(killed) >= 8 and min(killed.values()) >= 10, killed
    assert result["states"].get("new", 0) and result["states"].get("old", 0), result["states"]


def test_interrupted_at_every_step_of_the_swap(two_bundles, tmp_path):
    old, new = two_bundles
    result = _drive("faults", {"old": str(old), "new": str(new), "work": str(tmp_path), "phases": ["swap"],
                               "actions": ["interrupt"], "scenarios": ["old", "none", "old+leftover+lock"]})
    assert result["failures"] == [], "\n".join(result["failures"])
    interrupted = _per_step(result["counts"], "interrupt:swap:")
    print(f"\ninterrupts: {sum(interrupted.values())} at {len(interrupted)} swap steps")
    assert len(interrupted) >= 8, result["counts"]


def test_killed_at_every_step_before_and_during_the_writes(two_bundles, tmp_path):
    old, new = two_bundles
    result = _drive("faults", {"old": str(old), "new": str(new), "work": str(tmp_path),
                               "phases": ["prepare", "write"], "actions": ["kill"],
                               "scenarios": SCENARIOS}, timeout=600)
    assert result["failures"] == [], "\n".join(result["failures"])
    prepare = _per_step(result["counts"], "kill:prepare:")  # removing leftovers: steps vary with their size
    write = _per_step(result["counts"], "kill:write:")
    print(f"\nprepare: {sum(prepare.values())} kills at {len(prepare)} steps; write: {sum(write.values())} kills "
          f"at {len(write)} steps")
    assert len(prepare) >= 10 and sorted(prepare.values())[-8] >= 10, prepare
    assert len(_per_step(result["counts"], "kill:write:")) >= 10


def test_a_full_disk_at_every_step_leaves_the_old_bundle_and_nothing_else(two_bundles, tmp_path):
    old, new = two_bundles
    result = _drive("enospc", {"old": str(old), "new": str(new), "work": str(tmp_path)})
    assert result["failures"] == [], "\n".join(result["failures"])
    print(f"\nENOSPC: {sum(result['counts'].values())} cases at {len(result['counts'])} steps")
    assert len(result["counts"]) >= 15, result["counts"]


def test_concurrent_builds_of_one_target(two_bundles, tmp_path):
    old, new = two_bundles
    result = _drive("concurrent", {"old": str(old), "new": str(new), "work": str(tmp_path), "pairs": 6})
    assert result["failures"] == [], "\n".join(result["failures"])
    print(f"\nconcurrent: {result['runs']}")
    assert result["runs"]["serialised"] >= 4 and result["runs"]["refused"] >= 1, result["runs"]


def test_a_real_build_killed_at_every_write(two_bundles, tiny_checkpoint, tmp_path):
    old, _ = two_bundles
    result = _drive("real", {"old": str(old), "checkpoint": str(tiny_checkpoint), "work": str(tmp_path)})
    assert result["failures"] == [], "\n".join(result["failures"])
    print(f"\nreal build: {sum(result['counts'].values())} kills at {len(result['counts'])} steps")
    assert len(result["counts"]) >= 12, result["counts"]


def test_two_cli_builds_racing_for_one_out(tiny_checkpoint, tmp_path):
    from dsnet_export.runtime import load_bundle

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "dsnet_export", "build", "--checkpoint", str(tiny_checkpoint), "--out", str(out),
           "--quiet", "--no-check"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close(), p.stderr.close()
    assert [code for code, _ in results] == [0, 0], results
    assert "Traceback" not in "".join(err for _, err in results)
    load_bundle(out, verify=True)
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_a_folder_with_another_apps_manifest_is_not_replaced(tiny_model, tmp_path):
    from dsnet_export.export import build_bundle

    app = tmp_path / "webapp"
    (app / "static").mkdir(parents=True)
    files = {"manifest.json": '{"name": "My PWA", "start_url": "/"}', "index.html": "<html></html>",
             "static/app.js": "1"}
    for rel, text in files.items():
        (app / rel).write_text(text)
    for out in (app, app / "static"):  # a web manifest; no manifest at all
        with pytest.raises(DsnetError, match="is not a dsnet-export bundle; refusing to replace it") as caught:
            build_bundle(model=tiny_model, out=out, progress=False, check=False)
        assert str(out) in str(caught.value)
    assert {rel: (app / rel).read_text() for rel in files} == files
    assert sorted(os.listdir(tmp_path)) == ["webapp"] and sorted(os.listdir(app)) == sorted(
        ["manifest.json", "index.html", "static"])
    (app / "manifest.json").write_text("not json")
    with pytest.raises(DsnetError, match="refusing"):
        build_bundle(model=tiny_model, out=app, progress=False, check=False)
