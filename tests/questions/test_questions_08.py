"""Checks of chapter 08: the reference passes (visible and hidden), the released stubs
fail with the stub message, valid alternatives pass and every wrong answer fails
saying what broke."""

from __future__ import annotations

from pathlib import Path

import pytest

import labkit as lk
from exercise_kit import assert_case, assert_released_stubs_fail, reference, run, table, valid, wrong

SOLUTION = Path(__file__).resolve().parents[2] / "solutions" / "08_choosing_exercises.ipynb"
REF = reference(SOLUTION)
CHAT, CART, API = REF["plan_chat"], REF["plan_cart"], REF["plan_api"]


def test_released_stubs_fail_with_the_stub_message():
    assert_released_stubs_fail(SOLUTION, at_least=3)


@pytest.mark.parametrize("qid, plan", [("08.growing_context", CHAT),
                                       ("08.shopping_cart", CART), ("08.public_api", API)])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_the_reference_passes_visible_and_hidden(qid, plan, seed):
    for hidden in (False, True):
        result = run(qid, plan, seed=seed, hidden=hidden)
        assert result.passed, (seed, hidden, result.message)


# -- answers built from the reference, changed in one place ---------------------------
def changing(plan, **changes):
    """The reference plan with some inputs replaced (values may be functions of facts)."""
    def changed(facts):
        answer = plan(facts)
        inputs = dict(answer["inputs"])
        for name, value in changes.items():
            inputs[name] = value(facts) if callable(value) else value
        return {**answer, "inputs": inputs}
    return changed


def picking(plan, design=None, reason=None):
    def picked(facts):
        answer = plan(facts)
        return {**answer, "design": design or answer["design"], "reason": reason or answer["reason"]}
    return picked


def constant(plan, example):
    frozen = plan(example)
    return lambda facts: frozen


def by_own_rule(plan):
    """A learner's own choice rule: cheapest within the latency budget, from the table."""
    def own(facts):
        answer = plan(facts)
        model = lk.CostModel(**answer["inputs"])
        rows = list(model.table())
        prefer = ["tokens", "serverless", "store", "sticky"]
        rows.sort(key=lambda e: (round(e.total_usd_per_month, 6), prefer.index(e.design)))
        fits = [e for e in rows if e.state_ms_p50 <= model.latency_budget_ms]
        if fits:
            design = fits[0].design
            reason = "cheapest" if fits[0] is rows[0] else "latency"
        else:
            design, reason = min(rows, key=lambda e: e.state_ms_p50).design, "latency"
        return {**answer, "design": design, "reason": reason}
    return own


def rounded(plan):
    """Inputs rounded (to tens of bytes, whole cents) plus extra inputs left at defaults."""
    def r(facts):
        answer = plan(facts)
        inputs = {k: (round(v, -1) if k.endswith("_bytes") and v > 1_000 else v)
                  for k, v in answer["inputs"].items()}
        inputs.update(workers=4, utilization=0.6)
        return {**answer, "inputs": inputs}
    return r


def none_plan(facts):
    return None


def text_users(facts):
    answer = CHAT(facts)
    return {**answer, "inputs": {**answer["inputs"], "users": "many"}}


def mutating(plan):
    def m(facts):
        facts["turns"] = 1            # the check notices, though it passed a copy
        return plan(facts)
    return m


CHAT_CASES = [
    valid("08.growing_context", "reference", CHAT),
    valid("08.growing_context", "own choice rule", by_own_rule(CHAT)),
    valid("08.growing_context", "rounded inputs and extra defaults", rounded(CHAT)),
    wrong("08.growing_context", "answers the visible example only",
          constant(CHAT, REF["EXAMPLE_CHAT"]), says="should be", kind="visible-only"),
    wrong("08.growing_context", "context of one turn only",
          changing(CHAT, session_bytes=lambda f: f["bytes_per_turn"]),
          says="session_bytes", kind="logic"),
    wrong("08.growing_context", "token carries no context",
          changing(CHAT, token_bytes=lambda f: f["token_overhead_bytes"]),
          says="token_bytes", kind="logic"),
    wrong("08.growing_context", "restarts forgotten",
          changing(CHAT, crashes_per_server_per_month=0),
          says="crashes_per_server_per_month", kind="substance"),
    wrong("08.growing_context", "always tokens", picking(CHAT, design="tokens"),
          says="the model picks", kind="substance"),
    wrong("08.growing_context", "always sticky", picking(CHAT, design="sticky"),
          says="the model picks", kind="substance"),
    wrong("08.growing_context", "always the latency reason", picking(CHAT, reason="latency"),
          says="reason", kind="logic"),
    wrong("08.growing_context", "returns None", none_plan, says="should return a dict",
          kind="hostile-input"),
    wrong("08.growing_context", "text for a number", text_users, says="should be a finite number",
          kind="hostile-input"),
    wrong("08.growing_context", "a design the model does not know",
          picking(CHAT, design="jwt"), says="should be one of", kind="hostile-input"),
    wrong("08.growing_context", "changes the facts it was given", mutating(CHAT),
          says="changed the facts", kind="hostile-input"),
]

CART_CASES = [
    valid("08.shopping_cart", "reference", CART),
    valid("08.shopping_cart", "own choice rule", by_own_rule(CART)),
    valid("08.shopping_cart", "rounded inputs and extra defaults", rounded(CART)),
    wrong("08.shopping_cart", "answers the visible example only",
          constant(CART, REF["EXAMPLE_CART"]), says="should be", kind="visible-only"),
    wrong("08.shopping_cart", "a lost cart costs its whole value",
          changing(CART, relogin_cost_usd=lambda f: f["cart_value_usd"]),
          says="relogin_cost_usd", kind="logic"),
    wrong("08.shopping_cart", "cart of one item",
          changing(CART, session_bytes=lambda f: f["bytes_per_item"]),
          says="session_bytes", kind="logic"),
    wrong("08.shopping_cart", "always tokens", picking(CART, design="tokens"),
          says="the model picks", kind="substance"),
    wrong("08.shopping_cart", "always the shared store", picking(CART, design="store"),
          says="the model picks", kind="substance"),
    wrong("08.shopping_cart", "forces its pick with an extra input",
          lambda f: {**CART(f), "design": "serverless", "reason": "cheapest",
                     "inputs": {**CART(f)["inputs"], "price_server_hour": 1e6,
                                "price_store_gb_hour": 0, "price_function_gb_second": 0,
                                "price_function_million_requests": 0, "price_egress_gb": 0}},
          says="not one of this scenario's facts", kind="security"),
    wrong("08.shopping_cart", "negative shoppers", changing(CART, users=-5),
          says="users", kind="hostile-input"),
    wrong("08.shopping_cart", "returns a list", lambda f: [CART(f)],
          says="should return a dict", kind="hostile-input"),
]


def api_break_even_against(design):
    def plan(facts):
        answer = API(facts)
        model = lk.CostModel(**answer["inputs"])
        points = model.break_even(design, "serverless", vary="users", lo=1, hi=1e9)
        return {**answer, "break_even_clients": points[0].at}
    return plan


def api_own_bisection(facts):
    """A learner who finds the break-even by bisecting the totals themselves."""
    answer = API(facts)
    lo, hi = 1.0, 1e9
    model = lk.CostModel(**answer["inputs"])
    gap = lambda n: model.replace(users=n).total("tokens") - model.replace(users=n).total("serverless")
    for _ in range(200):
        mid = (lo * hi) ** 0.5
        lo, hi = (mid, hi) if gap(mid) > 0 else (lo, mid)
    return {**answer, "break_even_clients": round(lo)}


API_CASES = [
    valid("08.public_api", "reference", API),
    valid("08.public_api", "break-even found by hand", api_own_bisection),
    valid("08.public_api", "sticky servers with nothing to hold cost the same",
          api_break_even_against("sticky")),
    wrong("08.public_api", "answers the visible example only",
          constant(API, REF["EXAMPLE_API"]), says="should be", kind="visible-only"),
    wrong("08.public_api", "break-even against the shared store",
          api_break_even_against("store"), says="cost the same", kind="logic"),
    wrong("08.public_api", "remembers a session anyway", changing(API, session_bytes=2_000),
          says="session_bytes", kind="substance"),
    wrong("08.public_api", "always serverless", picking(API, design="serverless"),
          says="the model picks", kind="substance"),
    wrong("08.public_api", "always servers", picking(API, design="tokens"),
          says="the model picks", kind="substance"),
    wrong("08.public_api", "break-even in words",
          lambda f: {**API(f), "break_even_clients": "about 3k"},
          says="number of clients", kind="hostile-input"),
    wrong("08.public_api", "not a function", "serverless", says="plan function",
          kind="hostile-input"),
]


@table(CHAT_CASES + CART_CASES + API_CASES)
def test_answer_table(case):
    assert_case(case)


@table([c for c in CHAT_CASES + CART_CASES + API_CASES if c.valid])
def test_valid_answers_pass_the_hidden_probes_too(case):
    assert_case(case, hidden=True)


def test_each_question_has_enough_rows():
    for cases in (CHAT_CASES, CART_CASES, API_CASES):
        assert sum(c.valid for c in cases) >= 3 and sum(not c.valid for c in cases) >= 4
        assert {c.kind for c in cases if not c.valid} >= {"visible-only", "hostile-input",
                                                         "substance", "logic"}


def test_a_failure_shows_its_seed_and_a_fixed_seed_repeats():
    first = run("08.growing_context", picking(CHAT, design="tokens"), seed=4242)
    again = run("08.growing_context", picking(CHAT, design="tokens"), seed=4242)
    assert not first.passed and first.message == again.message


# -- the adversarial answers (adversarial/answers_08.py), one row each -----------------
# Written blind against the checks: a learner who games them (always one design, the
# example's numbers, unit slips, hostile values, a right pick for a wrong reason, a
# rewritten cost model, extra inputs that steer the pick) and valid answers of other
# shapes. Each wrong row names the words its failure message must contain.
def _load_adversarial():
    import importlib.util

    path = Path(__file__).parent / "adversarial" / "answers_08.py"
    spec = importlib.util.spec_from_file_location("answers_08", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CASES


_INPUT = {  # name -> the input the message must name
    "chapter-users-rate": "inputs['users']", "session-in-kb": "inputs['session_bytes']",
    "token-overhead-only": "inputs['token_bytes']",
    "messages-per-second": "inputs['requests_per_user_per_minute']",
    "uplink-times-8": "inputs['client_uplink_mbps']", "no-loss-cost": "inputs['relogin_cost_usd']",
    "turns-not-bytes": "inputs['session_bytes']",
    "restarts-times-30": "inputs['crashes_per_server_per_month']",
    "budget-in-seconds": "inputs['latency_budget_ms']",
    "right-pick-inputs-in-kb": "inputs['session_bytes']", "huge-users": "inputs['users']",
    "negative-users": "inputs['users']", "zero-users": "inputs['users']",
    "huge-budget-extra": "inputs['latency_budget_ms']", "missing-inputs": "client_uplink_mbps",
    "example-token-overhead": "inputs['token_bytes']",
    "example-uplink": "inputs['client_uplink_mbps']",
    "example-budget": "inputs['latency_budget_ms']", "example-shoppers": "inputs['users']",
    "full-cart-value": "inputs['relogin_cost_usd']",
    "abandon-rate-as-usd": "inputs['relogin_cost_usd']",
    "no-token-overhead": "inputs['token_bytes']", "items-not-bytes": "inputs['session_bytes']",
    "views-per-hour": "inputs['requests_per_user_per_minute']",
    "restarts-per-year": "inputs['crashes_per_server_per_month']",
    "right-pick-full-value-reported": "inputs['relogin_cost_usd']",
    "example-abandon-rate": "inputs['relogin_cost_usd']", "example-clients": "inputs['users']",
    "service-in-seconds": "inputs['service_time_ms']",
    "rate-per-second": "inputs['requests_per_user_per_minute']",
    "cookie-extra": "inputs['cookie_bytes']", "defaults-left": "set inputs[",
    "session-default": "set inputs['session_bytes']",
}
_PHRASE = {  # name -> another property the message must name
    "example-frozen": "should be", "returns-none": "should return a dict",
    "returns-tuple": "should return a dict", "returns-choice": "should return a dict",
    "inputs-is-model": "should be a dict", "nan-inputs": "finite number",
    "string-inputs": "finite number", "raises-sometimes": "KeyError",
    "mutates-facts": "changed the facts", "clears-facts": "changed the facts",
    "patches-choose": "changed the cost model", "patches-module-constants": "changed the cost model",
    "free-servers-extra": "not one of this scenario's facts",
    "tiny-budget-extra": "not one of this scenario's facts",
    "replicated-extra": "not one of this scenario's facts",
    "free-functions-extra": "not one of this scenario's facts",
    "design-capitalised": "should be one of",
    "reason-always-cheapest": "reason", "reason-always-latency": "reason",
    "right-inputs-pick-from-kb": "the model picks", "right-inputs-pick-from-full-value": "the model picks",
    "cheapest-ignores-budget": "the model picks", "random-pick": "the model picks",
    "lying-str-design": "the model picks", "example-break-even": "do not cost the same",
    "patches-check": "changed the cost model", "flipping-dict": "the model picks",
    "huge-int-users": "finite number",
    "always-store-latency": "store is",     # a wrong design, or the right one for a wrong reason
}


def _adversarial_rows():
    rows = []
    for qid, name, kind, is_valid, factory in _load_adversarial():
        answers = factory()
        if is_valid:
            rows.append(valid(qid, f"adv {name}", *answers))
            continue
        if name in _INPUT:
            says = _INPUT[name]
        elif name in _PHRASE:
            says = _PHRASE[name]
        elif name.startswith(("always-", "always ")):
            says = "the model picks"
        elif name.startswith("break-even-"):
            says = "break_even_clients" if name in (
                "break-even-list", "break-even-nan", "break-even-inf", "break-even-negative",
                "break-even-string", "break-even-bool", "break-even-missing",
                "break-even-narrow-range") else "do not cost the same"
        else:
            raise AssertionError(f"no expected message for the adversarial row {qid} {name}")
        rows.append(wrong(qid, f"adv {name}", *answers, says=says, kind=kind))
    return rows


ADVERSARIAL = _adversarial_rows()


@pytest.fixture
def pristine_cost_model():
    """Some rows rewrite lk.CostModel (the check catches and undoes it); make sure."""
    from labkit.choosing import cost

    classes = (cost.CostModel, cost.Estimate, cost.CostTable, cost.Choice, cost.BreakEven)
    saved = {c: dict(vars(c)) for c in classes}, dict(vars(cost))
    yield
    assert {c: dict(vars(c)) for c in classes} == saved[0], "a check left the model rewritten"
    assert dict(vars(cost)) == saved[1], "a check left the model's module rewritten"


@table(ADVERSARIAL)
@pytest.mark.parametrize("salt", [0, 1, 2])
def test_adversarial_answers(case, salt, pristine_cost_model):
    assert_case(case, salt=salt)


def test_the_adversarial_table_covers_every_question():
    for qid in ("08.growing_context", "08.shopping_cart", "08.public_api"):
        rows = [c for c in ADVERSARIAL if c.qid == qid]
        assert sum(c.valid for c in rows) >= 3 and sum(not c.valid for c in rows) >= 8, qid


def test_passing_messages_do_not_depend_on_the_seed():
    for qid, plan in (("08.growing_context", CHAT), ("08.shopping_cart", CART),
                      ("08.public_api", API)):
        messages = {run(qid, plan, seed=seed).message for seed in (11, 12, 13)}
        assert len(messages) == 1, messages
