"""``lk.trying``: a stub says so in one line; every other error is still an error."""

from __future__ import annotations

import asyncio

import pytest

import labkit as lk


def _stub():
    raise NotImplementedError("Replace this line with your solution.")


def test_a_stub_says_what_to_solve_in_one_line(capsys):
    with lk.trying("03.sticky_policy"):
        _stub()
        pytest.fail("the block stops at the stub")
    assert capsys.readouterr().out == "solve 03.sticky_policy first, then run this cell\n"


def test_a_stub_factory_behind_lk_serve_is_found_through_the_kit_error(capsys):
    def make_app():
        _stub()

    with lk.trying("00.remember"), lk.serve(make_app, name="stub") as server:
        pytest.fail(f"a stub factory cannot serve: {server}")
    assert capsys.readouterr().out == "solve 00.remember first, then run this cell\n"


def test_a_learners_own_bug_is_raised_with_its_traceback(capsys):
    with pytest.raises(AssertionError, match="wrong answer"):
        with lk.trying("03.sticky_policy"):
            assert 1 == 2, "wrong answer"
    with pytest.raises(ZeroDivisionError):
        with lk.trying("03.sticky_policy"):
            1 / 0  # noqa: B018
    assert capsys.readouterr().out == ""


def test_a_not_implemented_error_from_a_library_is_not_taken_for_a_stub(capsys):
    loop = asyncio.AbstractEventLoop()  # its methods raise NotImplementedError
    with pytest.raises(NotImplementedError):
        with lk.trying("06.least_loaded"):
            loop.run_forever()
    assert capsys.readouterr().out == ""


def test_ctrl_c_always_stops():
    with pytest.raises(KeyboardInterrupt):
        with lk.trying("06.least_loaded"):
            raise KeyboardInterrupt


def test_a_block_that_works_prints_nothing_extra(capsys):
    with lk.trying("06.least_loaded"):
        print("s1")
    assert capsys.readouterr().out == "s1\n"
