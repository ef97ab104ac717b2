"""Start the Triton server that the ``nvidia-pytriton`` wheel ships (Python backend only) on a repository written
with ``--engines python``: the CPU way to serve a bundle with Triton, used by ``triton-repo --serve`` and the tests.

In NVIDIA's container, run its own ``tritonserver --model-repository REPO`` instead.  Two traps this module
handles: the Python backend runs the stub found *beside* ``libtriton_python.so``, so a backend folder of links
holding this interpreter's stub is made; and the stub links ``libpython3.x.so`` dynamically, so this
interpreter's own library folder goes first on ``LD_LIBRARY_PATH`` (else the system's Python is loaded).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from ...errors import DsnetError

INSTALL = "pip install --no-deps nvidia-pytriton==0.7.0"


def pytriton_dist() -> Path | None:
    """The ``tritonserver`` folder of the nvidia-pytriton wheel (located only; its Python package is not imported,
    since it pins numpy<2)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
    return root if (root / "bin" / "tritonserver").is_file() else None


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class LocalTriton:
    """``tritonserver`` serving ``repository`` on ``host:http_port`` (HTTP only), as a context manager: started and
    ready (every model loaded) on entry, stopped on exit.  ``explicit``: model control mode explicit (models can
    be unloaded and loaded by clients)."""

    def __init__(self, repository: str | os.PathLike, *, host: str = "127.0.0.1", http_port: int | None = None,
                 explicit: bool = False, ready_timeout: float = 120.0, log: str | os.PathLike | None = None):
        dist = pytriton_dist()
        if dist is None:
            raise DsnetError(f"no tritonserver binary found; install the one nvidia-pytriton ships: {INSTALL} "
                             f"(or run NVIDIA's Triton container)")
        version = f"{sys.version_info[0]}.{sys.version_info[1]}"
        self.stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not self.stub.is_file():
            raise DsnetError(f"nvidia-pytriton has no Python backend stub for Python {version}")
        self.dist, self.repository = dist, Path(repository)
        self.host, self.http_port = host, http_port or free_ports(1)[0]
        self.explicit, self.ready_timeout = explicit, ready_timeout
        self._work = tempfile.TemporaryDirectory(prefix="dsnet-triton-")
        self.log = Path(log) if log else Path(self._work.name) / "tritonserver.log"
        self.process: subprocess.Popen | None = None
        self.startup_s = 0.0

    @property
    def url(self) -> str:
        return f"{self.host}:{self.http_port}"

    def command(self) -> list[str]:
        backends = Path(self._work.name) / "backends"
        python = backends / "python"
        if not python.exists():
            python.mkdir(parents=True)
            for item in (self.dist / "backends" / "python").iterdir():
                if item.name != "__pycache__":
                    (python / item.name).symlink_to(item)
            (python / "triton_python_backend_stub").symlink_to(self.stub)
        grpc, metrics = free_ports(2)
        return [str(self.dist / "bin" / "tritonserver"), f"--model-repository={self.repository}",
                f"--backend-directory={backends}",
                *(["--model-control-mode=explicit", "--load-model=*"] if self.explicit else []),
                f"--http-port={self.http_port}", f"--http-address={self.host}", f"--grpc-port={grpc}",
                "--allow-grpc=false", f"--metrics-port={metrics}", "--allow-metrics=false", "--exit-timeout-secs=2"]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        libs = [sysconfig.get_config_var("LIBDIR") or "", str(self.dist.parent.parent / "nvidia_pytriton.libs")]
        env["LD_LIBRARY_PATH"] = ":".join(p for p in [*libs, env.get("LD_LIBRARY_PATH", "")] if p)
        env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def start(self) -> LocalTriton:
        import tritonclient.http as httpclient

        started = time.monotonic()
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(self.command(), stdout=sink, stderr=subprocess.STDOUT,
                                            env=self.environment(), start_new_session=True)
        client = httpclient.InferenceServerClient(self.url, connection_timeout=30, network_timeout=30)
        try:
            while True:
                if self.process.poll() is not None:
                    raise DsnetError(f"tritonserver exited with {self.process.returncode}:\n{self.tail()}")
                try:
                    if client.is_server_ready():
                        break
                except Exception:  # noqa: BLE001 - not listening yet
                    pass
                if time.monotonic() > started + self.ready_timeout:
                    raise DsnetError(f"tritonserver not ready after {self.ready_timeout:.0f} s:\n{self.tail()}")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        finally:
            client.close()
        self.startup_s = time.monotonic() - started
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=15)
        self._work.cleanup()

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def wait(self) -> int:
        """Block until the server ends (Ctrl-C stops it); its exit code."""
        if self.process is None:
            raise DsnetError("the server is not running (call start() first)")
        try:
            return self.process.wait()
        except KeyboardInterrupt:
            return 130

    def __enter__(self) -> LocalTriton:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
