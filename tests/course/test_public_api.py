"""The contract's public surface: `import labkit as lk` and these names."""

from __future__ import annotations

import subprocess
import sys

import pytest

import labkit as lk

CONTRACT = {"serve", "Server", "Cluster", "load_test", "check", "hint", "LabkitError"}


def test_the_contract_names_are_public_and_do_what_they_say():
    assert CONTRACT <= set(lk.__all__) and all(hasattr(lk, name) for name in lk.__all__)
    from flask import Flask

    def make_app():
        app = Flask("api")
        app.get("/")(lambda: "ok")
        return app

    with lk.serve(make_app, name="api") as server:
        assert isinstance(server, lk.Server) and repr(server) == "<Server api up>"
        server.kill()
        assert not server.alive and repr(server) == "<Server api down>"
        server.revive()
        assert server.alive
    with lk.Cluster(make_app, size=2, name="api-cluster") as cluster:
        report = lk.load_test(cluster, users=2, requests=20, progress=False)
        assert isinstance(report, lk.LoadReport) and report.ok == 20 and report.failed == 0
        assert set(report.per_server) == {"s1", "s2"}
    with pytest.raises(lk.LabkitError):
        lk.serve(42)
    result = lk.check("00.remember", lambda: (_ for _ in ()).throw(NotImplementedError()))
    assert result is not None and not result.passed


def test_every_error_the_kit_raises_on_purpose_is_a_labkit_error():
    import inspect

    from labkit import errors

    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass)
               if c.__module__ == errors.__name__ and not issubclass(c, Warning)]
    assert len(classes) > 10 and all(issubclass(c, lk.LabkitError) for c in classes)
    from labkit.checks import CheckFailed
    from labkit.state.tokens import TokenRejected
    assert issubclass(CheckFailed, lk.LabkitError) and issubclass(TokenRejected, lk.LabkitError)


def test_the_surface_stays_small():
    # About fifteen classes and verbs, plus three namespaces a chapter reads whole
    # (lk.policies, lk.tokens, lk.replication) and the names wave 2 adds.
    assert len(lk.__all__) <= 24


def test_namespaces_are_the_kit_modules_a_chapter_reads():
    assert hasattr(lk.policies, "Sticky") and hasattr(lk.policies, "RequestInfo")
    assert callable(lk.tokens.issue) and callable(lk.tokens.verify)
    assert issubclass(lk.replication.WriteInvalidate, lk.replication.Replica)


def test_the_console_script_and_module_answer_help():
    for command in ([sys.executable, "-m", "labkit", "--help"],):
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "release" in result.stdout and "grade" in result.stdout
