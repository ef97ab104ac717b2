"""loadtest's user errors: no target, a bad target, nothing listening -- one line each, no traceback."""

from __future__ import annotations

import pytest

from dsnet_export.cli import main


@pytest.mark.parametrize("target, message", [
    ([], "give a TARGET URL or --ray APP"),
    (["ftp://127.0.0.1:9"], "expected triton://HOST:PORT"),
    (["http://127.0.0.1:9"], "cannot reach http://127.0.0.1:9 .*is the server running"),
    (["triton://127.0.0.1:9/dsnet"], "cannot reach triton://127.0.0.1:9/dsnet .*is the server running"),
])
def test_loadtest_errors_are_one_line(tiny_bundle, capsys, target, message):
    import re

    assert main(["loadtest", *target, "--bundle", str(tiny_bundle.path), "--requests", "2"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert re.search(message, err), err
