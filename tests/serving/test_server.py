"""lk.serve and Server: real sockets, crashes, revivals, logs, bad input."""

from __future__ import annotations

import socket

import pytest
import requests
from flask import Flask

import labkit as lk
from labkit import errors

from sample_apps import make_counter


@pytest.fixture(params=["thread", "process"])
def isolation(request):
    return request.param


def test_serve_answers_on_loopback_and_stamps_responses(isolation):
    with lk.serve(make_counter, name="alpha", isolation=isolation) as server:
        assert server.url.startswith("http://127.0.0.1:")
        response = requests.get(server.url + "/")
        assert response.text == "hello"
        assert response.headers["X-Served-By"] == "alpha"
        assert repr(server) == "<Server alpha up>"
        assert server.alive


def test_kill_refuses_connections_and_loses_memory(isolation):
    with lk.serve(make_counter, name="beta", isolation=isolation) as server:
        requests.post(server.url + "/count/ada")
        assert requests.get(server.url + "/count/ada").json()["count"] == 1
        server.kill()
        assert not server.alive and repr(server) == "<Server beta down>"
        with pytest.raises(requests.ConnectionError):
            requests.get(server.url + "/", timeout=2)
        server.revive()
        assert requests.get(server.url + "/count/ada").json()["count"] == 0


def test_a_killed_server_refuses_a_client_it_served_before(isolation):
    with lk.serve(make_counter, name="gamma", isolation=isolation) as server:
        session = requests.Session()
        assert session.get(server.url + "/").ok
        server.kill()
        with pytest.raises(requests.ConnectionError):
            session.get(server.url + "/", timeout=2)


def test_revive_keeps_the_url_when_the_port_is_free():
    with lk.serve(make_counter, name="delta") as server:
        url = server.url
        server.kill()
        server.revive()
        assert server.url == url
        assert requests.get(url + "/").ok


def test_close_is_safe_twice_and_then_refuses_revive():
    server = lk.serve(make_counter, name="eps")
    server.close()
    server.close()
    assert repr(server) == "<Server eps closed>"
    with pytest.raises(errors.ServerStateError, match="closed"):
        server.revive()


def test_serving_again_under_a_name_replaces_the_old_server():
    first = lk.serve(make_counter, name="same")
    second = lk.serve(make_counter, name="same")
    try:
        assert first.state == "closed"
        assert requests.get(second.url + "/").ok
    finally:
        second.close()


def test_a_plain_app_can_be_served():
    app = make_counter()
    with lk.serve(app, name="plain") as server:
        assert requests.get(server.url + "/").text == "hello"
        assert server.app is app


def test_request_log_is_structured_and_hashes_the_session_id(isolation):
    with lk.serve(make_counter, name="logged", isolation=isolation) as server:
        requests.get(server.url + "/", cookies={"sid": "secret-session-id"},
                     headers={"User-Agent": "tester/1"})
        (entry,) = server.request_log()
        assert entry["method"] == "GET" and entry["path"] == "/"
        assert entry["status"] == 200 and entry["user_agent"] == "tester/1"
        assert entry["client"] == "127.0.0.1" and entry["server"] == "logged"
        assert entry["session"] and "secret-session-id" not in str(entry)
        assert server.stats() == {"requests": 1, "errors": 0, "sessions": 0}


def test_an_app_error_is_a_500_in_the_log_not_a_print(isolation, capfd):
    with lk.serve(make_counter, name="errs", isolation=isolation) as server:
        assert requests.get(server.url + "/boom").status_code == 500
        assert server.stats()["errors"] == 1
    out, err = capfd.readouterr()
    assert "boom" not in out + err


def test_streamed_responses_arrive_whole():
    with lk.serve(make_counter, name="streamer") as server:
        assert requests.get(server.url + "/stream").text == "part0;part1;part2;part3;part4;"


# -- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize("thing", [42, "app", None, object()])
def test_serve_rejects_things_that_are_not_apps(thing):
    with pytest.raises(errors.BadAppError, match="Flask app"):
        lk.serve(thing)


def test_a_factory_that_returns_no_app():
    with pytest.raises(errors.BadAppError, match="return app"):
        lk.serve(lambda: None, name="noapp")


def test_a_factory_that_needs_arguments():
    def make(config):
        return Flask("x")

    with pytest.raises(errors.BadAppError, match="lambda"):
        lk.serve(make, name="args")


def test_a_factory_that_raises(isolation):
    def broken():
        raise ValueError("no database")

    with pytest.raises(errors.AppFactoryError, match="no database"):
        lk.serve(broken, name="broken", isolation=isolation)


def test_an_app_that_never_becomes_ready(isolation):
    import threading

    release = threading.Event()

    def stuck():
        release.wait(3)
        return Flask("stuck")

    try:
        with pytest.raises(errors.ServerStartError, match="within"):
            lk.serve(stuck, name="stuck", isolation=isolation, ready_timeout=0.5)
    finally:
        release.set()


def test_a_busy_port_names_the_port():
    from labkit.serving.server import Server

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        server = Server(make_counter, name="busy")
        server._port = port  # ask for exactly that port, as a revive would
        server.state = "down"
        from labkit.serving._serving import bind as _bind

        with pytest.raises(errors.PortInUseError, match=str(port)):
            _bind(port)
        server.revive()  # a revive falls back to a free port instead of failing
        assert server.port != port and requests.get(server.url + "/").ok
        server.close()
    finally:
        blocker.close()


def test_every_error_is_a_labkit_error():
    for name in dir(errors):
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and obj.__module__ == errors.__name__:
            # a warning (the kit did something else than asked, and says so) is no error
            assert issubclass(obj, lk.LabkitError) or issubclass(obj, UserWarning)


def test_a_forked_server_does_not_keep_other_servers_alive():
    # s_thread's listening socket exists when the process server is forked; killing
    # s_thread must still refuse connections although the child got a copy.
    with lk.serve(make_counter, name="threaded") as s_thread, \
         lk.serve(make_counter, name="forked", isolation="process") as s_proc:
        s_thread.kill()
        with pytest.raises(requests.ConnectionError):
            requests.get(s_thread.url + "/", timeout=2)
        assert requests.get(s_proc.url + "/").ok


def test_a_process_server_revived_from_a_short_lived_thread_outlives_it():
    # A fault schedule revives servers from a load-test user's thread; the child
    # must not die when that thread ends (PR_SET_PDEATHSIG is per thread).
    import threading
    import time

    with lk.serve(make_counter, name="orphan", isolation="process") as server:
        server.kill()
        reviver = threading.Thread(target=server.revive)
        reviver.start()
        reviver.join()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # give a wrongly armed signal time to fire
            assert server.alive and requests.get(server.url + "/", timeout=2).ok
            time.sleep(0.1)


KERNEL_SCRIPT = """
import os, threading
from flask import Flask
import labkit as lk

box = []
start = lambda: box.append(lk.serve(lambda: Flask("x"), name="k", isolation="process"))
if FROM_THREAD:
    worker = threading.Thread(target=start)
    worker.start()
    worker.join()
else:
    start()
print(box[0]._process.pid, flush=True)
os._exit(0)  # die like a killed kernel: no atexit clean-up
"""


@pytest.mark.parametrize("from_thread", [False, True])
def test_no_orphan_server_process_when_its_kernel_dies(tmp_path, from_thread):
    import subprocess
    import sys
    import time

    import psutil

    script = tmp_path / "kernel.py"
    script.write_text(f"FROM_THREAD = {from_thread}\n" + KERNEL_SCRIPT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=60, check=True)
    child = int(out.stdout.split()[0])
    deadline = time.monotonic() + 10
    while True:
        try:
            if psutil.Process(child).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        assert time.monotonic() < deadline, "the server process outlived its kernel"
        time.sleep(0.05)
