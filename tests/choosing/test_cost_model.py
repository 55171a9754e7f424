"""The cost model of chapter 08: its arithmetic, its lessons, its refusals."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import labkit as lk
from labkit.choosing import CATEGORIES, DESIGNS, PRICE_SOURCES
from labkit.errors import CostModelError, LabkitError


def test_it_is_public_and_pure():
    import ast
    import inspect

    import labkit.choosing.cost as cost

    assert lk.CostModel is cost.CostModel
    assert lk.CostModel.DESIGNS == ("sticky", "store", "tokens", "serverless")
    # Pure: the model's module imports only the standard library and the kit's errors
    # (plots and sliders are imported inside the methods that draw them).
    tree = ast.parse(inspect.getsource(cost))
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name.split(".")[0] for n in top if isinstance(n, ast.Import) for a in n.names}
    names |= {(n.module or "").split(".")[0] for n in top
              if isinstance(n, ast.ImportFrom) and n.level == 0}
    assert names <= {"__future__", "math", "dataclasses", "typing"}, names


def test_every_output_has_a_unit():
    estimate = lk.CostModel().estimate("sticky")
    fields = [f for f in vars(estimate) if f != "design"]
    assert set(fields) | {"total_usd_per_month"} == set(estimate.UNITS)
    assert set(estimate.cost_usd_per_month) == set(CATEGORIES)
    text = repr(lk.CostModel().table())
    for unit in ("USD/month", "ms/request", "bytes", "sessions", "servers"):
        assert unit in text
    assert "<table>" in lk.CostModel().table()._repr_html_()


def test_price_defaults_are_dated_and_sourced():
    model = lk.CostModel()
    for name in model.inputs():
        if name.startswith("price_"):
            assert name in PRICE_SOURCES and "aws.amazon.com" in PRICE_SOURCES[name]
    from labkit.choosing.cost import PRICE_DATE

    assert PRICE_DATE.count("-") == 2


def test_the_arithmetic_of_one_design_by_hand():
    m = lk.CostModel(users=6_000, requests_per_user_per_minute=1, session_bytes=1_000,
                     replication=1, workers=2, service_time_ms=100, utilization=0.5,
                     min_servers=1, lookup_ms=0.0, cookie_bytes=0, price_server_hour=1.0,
                     server_memory_gb=0.0, price_memory_gb_hour=1.0, price_egress_gb=0.0,
                     crashes_per_server_per_month=1, relogin_cost_usd=0.01)
    e = m.estimate("sticky")
    # 100 requests/s x 0.1 s busy = 10 busy workers; 2 workers at 50% = 1 per server.
    assert m.requests_per_second == 100 and e.servers == pytest.approx(10)
    assert e.cost_usd_per_month["compute"] == pytest.approx(10 * 730)
    assert e.cost_usd_per_month["memory"] == pytest.approx(6_000 * 1_000 / 1e9 * 730)
    assert e.lost_per_server_crash == pytest.approx(600)       # a tenth of the users
    assert e.cost_usd_per_month["failures"] == pytest.approx(6_000 * 0.01)  # each loses once


def test_the_lessons_the_chapter_asserts():
    m = lk.CostModel(users=20_000, session_bytes=2_000, token_bytes=300, cookie_bytes=60)
    t = m.table()
    # tokens send more bytes but hold no memory and lose nothing in a crash
    assert t["tokens"].bytes_per_request > t["sticky"].bytes_per_request
    assert t["tokens"].memory_gb == 0 < t["sticky"].memory_gb
    assert t["tokens"].lost_per_server_crash == 0 < t["sticky"].lost_per_server_crash
    # the shared store removes the crash cost but adds a round trip
    assert t["store"].lost_per_server_crash == 0
    assert t["store"].state_ms_p50 - t["sticky"].state_ms_p50 == pytest.approx(
        m.store_rtt_ms - m.lookup_ms)
    # replicas: one crash loses nothing
    assert m.replace(replication=2).estimate("sticky").lost_per_server_crash == 0


def test_break_even_points_are_where_totals_meet():
    m = lk.CostModel()
    points = m.break_even("tokens", "serverless", vary="users", lo=10, hi=1e7)
    assert len(points) == 1
    at = points[0].at
    moved = m.replace(users=at)
    assert moved.total("tokens") == pytest.approx(moved.total("serverless"), rel=1e-6)
    assert points[0].cheaper_above == "tokens"       # servers win at scale...
    assert m.replace(users=at / 2).total("serverless") < m.replace(users=at / 2).total("tokens")
    assert "users" in repr(points[0]) and "cheaper" in repr(points[0])
    # ...and when one design is cheaper everywhere there is no point at all
    assert m.break_even("sticky", "tokens", vary="users", lo=10, hi=1e7) == []


def test_choose_gives_a_design_and_a_reason():
    m = lk.CostModel()
    assert m.choose().design == m.cheapest() and m.choose().reason == "cheapest"
    # a context too big to carry on every request breaks the latency budget
    huge = m.replace(token_bytes=200_000, session_bytes=200_000, latency_budget_ms=50)
    design, reason = huge.choose()
    assert design != "tokens" and huge.estimate("tokens").state_ms_p50 > 50
    cheap_fast = m.replace(latency_budget_ms=0.2, token_bytes=5_000)  # only sticky fits
    assert cheap_fast.choose() == type(m.choose())("sticky", "latency")


@pytest.mark.parametrize("changes, words", [
    ({"users": -1}, "users must be 0 or more"),
    ({"workers": 0}, "no capacity"),
    ({"service_time_ms": 0}, "service_time_ms must be more than 0"),
    ({"utilization": 1.5}, "at most 1"),
    ({"replication": 1.5}, "whole number"),
    ({"users": float("nan")}, "finite"),
    ({"users": float("inf")}, "finite"),
    ({"users": True}, "must be a number"),
    ({"session_bytes": "2k"}, "must be a number"),
    ({"price_egress_gb": -0.01}, "price_egress_gb must be 0 or more"),
])
def test_bad_input_is_refused_clearly(changes, words):
    with pytest.raises(CostModelError, match=words):
        lk.CostModel(**changes)
    with pytest.raises(LabkitError):
        lk.CostModel().replace(**changes)


def test_bad_questions_are_refused_clearly():
    m = lk.CostModel()
    with pytest.raises(CostModelError, match="unknown design 'lambda'; choose one of: sticky"):
        m.estimate("lambda")
    with pytest.raises(CostModelError, match="unknown input 'user'"):
        m.replace(user=3)
    with pytest.raises(CostModelError, match="itself"):
        m.break_even("tokens", "tokens", vary="users", lo=1, hi=10)
    with pytest.raises(CostModelError, match="range must grow"):
        m.break_even("tokens", "sticky", vary="users", lo=10, hi=1)
    with pytest.raises(CostModelError, match="unknown input 'bogus'"):
        m.break_even("tokens", "sticky", vary="bogus", lo=1, hi=10)
    with pytest.raises(CostModelError, match="whole number"):
        m.break_even("tokens", "sticky", vary="workers", lo=1, hi=10)
    with pytest.raises(CostModelError, match="users must be 0 or more"):
        m.break_even("tokens", "sticky", vary="users", lo=-5, hi=10)
    with pytest.raises(TypeError):
        lk.CostModel(10_000)      # keyword-only
    with pytest.raises(CostModelError, match="steps"):
        m.break_even("tokens", "sticky", vary="users", lo=1, hi=10, steps=0)
    with pytest.raises(CostModelError, match="too large"):
        lk.CostModel(users=1e300, requests_per_user_per_minute=1e300).table()
    with pytest.raises(CostModelError, match="no slider for 'user'"):
        m.explore(user=(1, 10))
    with pytest.raises(CostModelError, match="low < high"):
        m.explore(users=(10, 1))


@settings(max_examples=60, deadline=None)
@given(users=st.floats(0, 1e7), rpm=st.floats(0, 600), session=st.floats(0, 1e6),
       token=st.floats(0, 1e6), crashes=st.floats(0, 100))
def test_totals_are_finite_and_never_negative(users, rpm, session, token, crashes):
    m = lk.CostModel(users=users, requests_per_user_per_minute=rpm, session_bytes=session,
                     token_bytes=token, crashes_per_server_per_month=crashes)
    for design in DESIGNS:
        e = m.estimate(design)
        assert all(math.isfinite(v) and v >= 0 for v in e.cost_usd_per_month.values())
        assert e.state_ms_p50 >= 0 and e.lost_per_server_crash <= max(users, 0) + 1e-6
    assert m.choose().design in DESIGNS


def test_plots_draw_every_design(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = lk.CostModel()
    ax = m.plot()
    assert [t.get_text() for t in ax.get_xticklabels()] == list(DESIGNS)
    assert len(ax.patches) == len(DESIGNS) * len(CATEGORIES)
    ax2 = m.plot_break_even(vary="users", lo=10, hi=1e7)
    assert [line.get_label() for line in ax2.get_lines()][:4] == list(DESIGNS)
    plt.close("all")


def test_the_explorer_is_a_box_of_sliders():
    pytest.importorskip("ipywidgets")
    box = lk.CostModel().explore(users=(10, 1e7))
    sliders = [w for w in box.children if hasattr(w, "value")]
    assert {s.description for s in sliders} >= {"users", "session bytes", "token bytes"}
    users = next(s for s in sliders if s.description == "users")
    assert users.min == 1 and users.max == 7           # log10 of the range asked for
    users.value = 123_456                              # moving it must not raise
