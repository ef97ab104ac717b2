"""The two one-command servers as a user starts them: `triton-repo --serve` and `serve` in their own processes,
loaded with `loadtest --check`, then stopped with SIGTERM (as a supervisor stops them), leaving no server behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from dsnet_export.cli import main
from dsnet_export.serving.triton.server import free_ports, pytriton_dist

READY_S = 90


def _wait_ready(url: str, process: subprocess.Popen, log) -> None:
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"not ready after {READY_S} s:\n{log.read_text()[-3000:]}")


def _processes_with(argument: str) -> list[int]:
    """Processes whose command line holds ``argument``."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if argument.encode() in f.read().split(b"\0"):
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


def _stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        pytest.fail("the server did not stop within 60 s of SIGTERM")


def _loadtest(target: list[str], bundle, capsys) -> dict:
    argv = ["loadtest", *target, "--bundle", str(bundle), "--requests", "24", "--concurrency", "4", "--check",
            "--json", "-", "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["load"]["completed"] == 24 and report["check"]["mismatches"] == 0
    return report


def test_triton_repo_serve(tiny_bundle, tmp_path, capsys):
    pytest.importorskip("tritonclient.http")
    if pytriton_dist() is None:
        pytest.skip("no tritonserver binary (pip install --no-deps nvidia-pytriton==0.7.0)")
    (port,) = free_ports(1)
    log = tmp_path / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "dsnet_export", "triton-repo", str(tiny_bundle.path),
                                    "--out", str(tmp_path / "repo"), "--engines", "python", "--serve", "--port",
                                    str(port)], stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_ready(f"http://127.0.0.1:{port}/v2/health/ready", process, log)
        _loadtest([f"triton://127.0.0.1:{port}/dsnet"], tiny_bundle.path, capsys)
    finally:
        code = _stop(process)
    assert code == 0, log.read_text()[-3000:]
    assert not _processes_with(f"--http-port={port}"), "tritonserver outlived the command"


def test_ray_serve_command(tiny_bundle, tmp_path, capsys):
    pytest.importorskip("ray.serve")
    (port,) = free_ports(1)
    log = tmp_path / "server.log"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "dsnet_export", "serve", str(tiny_bundle.path), "--port",
                                    str(port), "--num-cpus", "2", "--no-verify"], stdout=sink,
                                   stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        _wait_ready(f"http://127.0.0.1:{port}/", process, log)
        report = _loadtest([f"http://127.0.0.1:{port}"], tiny_bundle.path, capsys)
        assert sum(s["rows"] for s in report["load"]["routes"].values()) == 24
    finally:
        code = _stop(process)
    assert code == 0, log.read_text()[-3000:]
    assert "shutting down" in log.read_text()
