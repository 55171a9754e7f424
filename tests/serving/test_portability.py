"""What differs between machines: interpreters, platforms, loopback addresses."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

import labkit as lk
from labkit.apps import clients
from labkit.errors import LabkitWarning, LoopbackAddressError
from labkit.serving import server as server_module

from sample_apps import make_counter

ROOT = Path(__file__).resolve().parents[2]


class _MacLoopbackSocket(socket.socket):
    """A socket that, like macOS, has only 127.0.0.1 configured on loopback."""

    def bind(self, address):
        if address[0] != "127.0.0.1":
            raise OSError(errno.EADDRNOTAVAIL, "Can't assign requested address")
        return super().bind(address)


def test_a_second_loopback_address_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(clients.socket, "socket", _MacLoopbackSocket)
    with pytest.raises(LoopbackAddressError, match=r"sudo ifconfig lo0 alias 127\.0\.0\.2 up"):
        clients.client(source="127.0.0.2")
    with pytest.raises(lk.LabkitError):  # one except catches every kit complaint
        clients.client(source="127.0.0.3")
    clients.client(source="127.0.0.1").close()  # the address every machine has


def test_a_configured_second_address_sends_from_it():
    with lk.serve(make_counter, name="loopback") as server, \
            clients.client(source="127.0.0.2") as mallory:
        assert mallory.get(server.url + "/", timeout=10).status_code == 200
        assert server.request_log()[-1]["client"] == "127.0.0.2"


def test_process_isolation_falls_back_to_a_thread_where_fork_is_unsafe(monkeypatch):
    monkeypatch.setattr(server_module, "PROCESS_ISOLATION", False)
    with pytest.warns(LabkitWarning, match="runs as a thread instead"):
        server = lk.serve(make_counter, name="no-fork", isolation="process")
    with server:
        assert server.isolation == "thread"
        assert requests.get(server.url + "/", timeout=10).status_code == 200
        server.kill()
        with pytest.raises(requests.ConnectionError):
            requests.get(server.url + "/", timeout=10)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_each_interpreter_gets_its_own_environment():
    # A test run by `make test PYTHON=...` must not pass that PYTHON on: make hands
    # command-line variables to sub-makes through MAKEFLAGS.
    clean = {k: v for k, v in os.environ.items()
             if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "PYTHON")}

    def plan(*args):
        return subprocess.run(["make", "-n", "setup", *args], cwd=ROOT, text=True, env=clean,
                              capture_output=True, check=True).stdout

    version = "%d.%d" % sys.version_info[:2]
    chosen = plan("-B", f"PYTHON={sys.executable}")  # -B: the plan even if it is built
    assert f"-m venv --clear .venv-{version}\n" in chosen
    assert f".venv-{version}/.installed-{version}." in chosen
    # Plain `make` keeps .venv, but its stamp names the interpreter's version, so a
    # .venv that another Python built is rebuilt, never silently reused.
    assert "/.installed-" in plan("-B") and ".venv/bin/python -m pip" in plan("-B")
