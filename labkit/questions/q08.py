"""Chapter 08 questions: choosing a design, case by case, with the cost model.

Each question is a case study. The learner writes a *plan*: a function that reads
the scenario's facts (a dict) and returns the model's inputs, a design and a
one-line reason code::

    {"inputs": {"users": ..., "session_bytes": ...}, "design": "sticky", "reason": "cheapest"}

The check calls the plan on scenarios it draws at random (``context().rng``), so a
plan that answers one visible example fails, and at grade time on extra hidden ones.
It judges the inputs against the facts (each one named in the message) and the
choice against the model built from those facts, never against a stored answer.

* ``08.growing_context``: a chat app whose conversation (an LLM's context) grows;
* ``08.shopping_cart``: a shop whose carts are lost when a server restarts;
* ``08.public_api``: a public REST API for many anonymous clients, and the traffic
  at which servers beat functions (a break-even point).
"""

from __future__ import annotations

import math
import random
from typing import Any, Callable

from ..checks import CheckFailed, context, question
from ..choosing.cost import DESIGNS, CostModel, Estimate
from ..errors import CostModelError

REASONS = ("cheapest", "latency")
TOLERANCE = 0.02          # inputs may be rounded by up to 2%


# -- scenarios: the facts a learner reads, drawn from the check's rng -----------------
def growing_context_facts(rng: random.Random, *, long: bool | None = None) -> dict:
    """A chat app: users, how often they write, and how long conversations get."""
    long = rng.random() < 0.5 if long is None else long
    return {
        "users": rng.choice([800, 2_000, 5_000, 12_000, 30_000]),
        "messages_per_minute": rng.choice([1, 2, 3, 4]),
        "turns": rng.randint(200, 2_000) if long else rng.randint(1, 6),
        "bytes_per_turn": rng.choice([300, 600, 900, 1_200]),
        "token_overhead_bytes": rng.choice([220, 250, 280]),
        "uplink_mbps": rng.choice([2.0, 5.0, 10.0, 20.0]),
        "latency_budget_ms": rng.choice([30.0, 50.0, 100.0]),
        "lost_conversation_usd": rng.choice([0.001, 0.005, 0.02]),
        "restarts_per_month": rng.choice([2, 4, 8]),
    }


def growing_context_inputs(facts: dict) -> dict:
    """The model's inputs for a chat scenario (what the reference plan computes)."""
    context_bytes = facts["turns"] * facts["bytes_per_turn"]
    return {
        "users": facts["users"],
        "requests_per_user_per_minute": facts["messages_per_minute"],
        "session_bytes": context_bytes,                    # held by the server...
        "token_bytes": context_bytes + facts["token_overhead_bytes"],  # ...or carried
        "client_uplink_mbps": facts["uplink_mbps"],
        "latency_budget_ms": facts["latency_budget_ms"],
        "relogin_cost_usd": facts["lost_conversation_usd"],
        "crashes_per_server_per_month": facts["restarts_per_month"],
    }


def shopping_cart_facts(rng: random.Random, *, risky: bool | None = None) -> dict:
    """A shop: shoppers, cart sizes, what a lost cart costs, how often servers restart."""
    risky = rng.random() < 0.5 if risky is None else risky
    return {
        "shoppers": rng.choice([1_000, 4_000, 20_000, 60_000]),
        "page_views_per_minute": rng.choice([2, 4, 6]),
        "items_in_cart": rng.randint(1, 12),
        "bytes_per_item": rng.choice([80, 150, 400]),
        "token_overhead_bytes": rng.choice([220, 250, 280]),
        "cart_value_usd": rng.choice([20.0, 45.0, 90.0]) if risky else rng.choice([5.0, 10.0]),
        "abandon_rate": rng.choice([0.05, 0.1, 0.2]) if risky else rng.choice([0.0001, 0.0005]),
        "restarts_per_month": rng.choice([2, 4, 8, 30]),
    }


def shopping_cart_inputs(facts: dict) -> dict:
    cart_bytes = facts["items_in_cart"] * facts["bytes_per_item"]
    return {
        "users": facts["shoppers"],
        "requests_per_user_per_minute": facts["page_views_per_minute"],
        "session_bytes": cart_bytes,
        "token_bytes": cart_bytes + facts["token_overhead_bytes"],
        # A lost cart costs its value times the share of shoppers who then give up.
        "relogin_cost_usd": facts["cart_value_usd"] * facts["abandon_rate"],
        "crashes_per_server_per_month": facts["restarts_per_month"],
    }


def public_api_facts(rng: random.Random, *, busy: bool | None = None) -> dict:
    """A public REST API: anonymous clients, each request complete in itself."""
    busy = rng.random() < 0.5 if busy is None else busy
    return {
        "clients": rng.randint(20_000, 400_000) if busy else rng.randint(10, 800),
        "requests_per_client_per_minute": rng.choice([0.5, 1.0, 2.0, 5.0]),
        "service_time_ms": rng.choice([10.0, 20.0, 50.0]),
    }


def public_api_inputs(facts: dict) -> dict:
    return {
        "users": facts["clients"],
        "requests_per_user_per_minute": facts["requests_per_client_per_minute"],
        "service_time_ms": facts["service_time_ms"],
        # Anonymous and RESTful: there is nothing to remember, carry or check.
        "session_bytes": 0, "cookie_bytes": 0, "token_bytes": 0,
        "relogin_cost_usd": 0, "verify_ms": 0, "lookup_ms": 0,
    }


def public_api_break_even(facts: dict) -> float:
    """Clients at which stateless servers and functions cost the same."""
    model = CostModel(**public_api_inputs(facts))
    points = model.break_even("tokens", "serverless", vary="users", lo=1, hi=1e9)
    return points[0].at


# -- judging one answer -------------------------------------------------------------
def _plan_answer(plan: Callable[[dict], Any], facts: dict, what: str) -> dict:
    answer = plan(dict(facts))           # a copy: a plan may not change the facts
    if not isinstance(answer, dict) or not {"inputs", "design", "reason"} <= set(answer):
        raise CheckFailed(f"{what}: your plan should return a dict with 'inputs', 'design'"
                          f" and 'reason', but it returned {_short(answer)}.")
    if not isinstance(answer["inputs"], dict):
        raise CheckFailed(f"{what}: answer['inputs'] should be a dict of the model's inputs"
                          f" (e.g. {{'users': ...}}), not {_short(answer['inputs'])}.")
    return answer


def _model(inputs: dict, what: str) -> CostModel:
    if not all(isinstance(k, str) for k in inputs):
        raise CheckFailed(f"{what}: the keys of answer['inputs'] should be input names.")
    try:
        return CostModel().replace(**inputs)
    except CostModelError as exc:
        raise CheckFailed(f"{what}: the model refused your inputs: {exc}") from None


def _judge_inputs(inputs: dict, expected: dict, why: dict, what: str) -> None:
    for name, want in expected.items():
        if name not in inputs:
            raise CheckFailed(f"{what}: set inputs[{name!r}] ({why[name]}).")
        got = inputs[name]
        if isinstance(got, bool) or not isinstance(got, (int, float)) or not math.isfinite(got):
            raise CheckFailed(f"{what}: inputs[{name!r}] should be a number ({why[name]}),"
                              f" not {_short(got)}.")
        if abs(got - want) > TOLERANCE * abs(want) + 1e-9:
            raise CheckFailed(f"{what}: inputs[{name!r}] should be {want:,g} ({why[name]}),"
                              f" but your plan set {got:,g}.")


def _reason_holds(model: CostModel, design: str, reason: str) -> bool:
    table = model.table()
    mine = table[design]
    cheapest = min(e.total_usd_per_month for e in table)
    if reason == "cheapest":
        return mine.total_usd_per_month <= cheapest * 1.001 + 1e-9
    fits = mine.state_ms_p50 <= model.latency_budget_ms
    cheaper_miss = any(e.total_usd_per_month < mine.total_usd_per_month
                       and e.state_ms_p50 > model.latency_budget_ms for e in table)
    fastest = mine.state_ms_p50 <= min(e.state_ms_p50 for e in table) + 1e-12
    nothing_fits = all(e.state_ms_p50 > model.latency_budget_ms for e in table)
    return (fits and cheaper_miss) or (nothing_fits and fastest)


def _describe(e: Estimate) -> str:
    return f"{e.design} (${e.total_usd_per_month:,.0f}/month, +{e.state_ms_p50:.3g} ms)"


def _judge_choice(answer: dict, truth: CostModel, theirs: CostModel, what: str) -> str:
    design, reason = answer["design"], answer["reason"]
    if not isinstance(design, str) or design not in DESIGNS:
        raise CheckFailed(f"{what}: answer['design'] should be one of {', '.join(DESIGNS)},"
                          f" not {_short(design)}.")
    if not isinstance(reason, str) or reason not in REASONS:
        raise CheckFailed(f"{what}: answer['reason'] should be one of {', '.join(REASONS)},"
                          f" not {_short(reason)}.")
    # Judge against the model of the facts; a plan whose inputs were rounded (within
    # the tolerance) may also follow the model of its own inputs near a break-even.
    agreeing = [m for m in (truth, theirs) if m.choose().design == design]
    if not agreeing:
        choice = truth.choose()
        table = truth.table()
        raise CheckFailed(
            f"{what}: the model picks {_describe(table[choice.design])}, reason"
            f" {choice.reason!r}; your design {_describe(table[design])} is not its pick."
            f" Build lk.CostModel(**inputs) and compare the designs' totals and latency.")
    if not any(_reason_holds(m, design, reason) for m in agreeing):
        right = agreeing[0].choose().reason
        raise CheckFailed(f"{what}: {design} is right, but the reason {reason!r} is not"
                          f" why: the model says {right!r}"
                          f" (latency budget {truth.latency_budget_ms:g} ms).")
    return design


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _varied(draw: Callable[[], list[dict]], inputs_of: Callable[[dict], dict]) -> list[dict]:
    """Scenarios whose right answers differ: a plan that always picks one design fails."""
    for _ in range(50):
        facts = draw()
        if len({CostModel(**inputs_of(f)).choose().design for f in facts}) >= 2:
            return facts
    return facts


def _run_plan(plan: Callable, facts_list: list[dict], expected_of: Callable[[dict], dict],
              why: dict, label: Callable[[dict], str]) -> list[str]:
    if not callable(plan):
        raise CheckFailed(f"Pass your plan function itself, not {_short(plan)}.")
    picks = []
    for facts in facts_list:
        what = label(facts)
        answer = _plan_answer(plan, facts, what)
        expected = expected_of(facts)
        _judge_inputs(answer["inputs"], expected, why, what)
        _model(answer["inputs"], what)          # every input must be one the model takes
        # Judge with the facts' inputs only: extra inputs may not sway the verdict.
        theirs = CostModel(**{name: answer["inputs"][name] for name in expected})
        truth = CostModel(**expected)
        picks.append(_judge_choice(answer, truth, theirs, what))
    return picks


# -- the questions ------------------------------------------------------------------
_CHAT_WHY = {
    "users": "facts['users']",
    "requests_per_user_per_minute": "facts['messages_per_minute']: one request per message",
    "session_bytes": "the whole conversation the server must hold: turns x bytes_per_turn",
    "token_bytes": "what a stateless client carries in every request: the whole"
                   " conversation plus the token's own overhead",
    "client_uplink_mbps": "facts['uplink_mbps']",
    "latency_budget_ms": "facts['latency_budget_ms']",
    "relogin_cost_usd": "what one lost session costs: facts['lost_conversation_usd']",
    "crashes_per_server_per_month": "facts['restarts_per_month']: a restart empties"
                                    " memory like a crash",
}


@question("08.growing_context", points=3, hints=[
    "A server that remembers holds the conversation; a stateless one receives all of it,"
    " every time. Both are turns x bytes_per_turn (plus the token's overhead when carried).",
    "Map every fact to an input: messages_per_minute is requests_per_user_per_minute,"
    " uplink_mbps is client_uplink_mbps, lost_conversation_usd is relogin_cost_usd,"
    " restarts_per_month is crashes_per_server_per_month.",
    "Then let the model decide: choice = lk.CostModel(**inputs).choose() and return"
    " {'inputs': inputs, 'design': choice.design, 'reason': choice.reason}.",
])
def growing_context(plan_chat: Callable[[dict], Any]) -> str:
    "Plan a chat app whose conversations (an LLM's context) grow."
    ctx = context()
    facts = _varied(lambda: [growing_context_facts(ctx.rng, long=False),
                             growing_context_facts(ctx.rng, long=True),
                             growing_context_facts(ctx.rng)], growing_context_inputs)
    if ctx.hidden:
        facts += [growing_context_facts(ctx.rng) for _ in range(4)]
        facts.append({**growing_context_facts(ctx.rng, long=True), "turns": 1})  # a new chat
    picks = _run_plan(plan_chat, facts, growing_context_inputs, _CHAT_WHY,
                      lambda f: f"A chat of {f['turns']:,} turns for {f['users']:,} users")
    del picks  # which designs won differs from run to run; the message must not
    return ("Your plan set the inputs from the facts and picked what the model picks in"
            " every scenario, short conversations and long ones.")


_CART_WHY = {
    "users": "facts['shoppers']",
    "requests_per_user_per_minute": "facts['page_views_per_minute']",
    "session_bytes": "the cart the server holds: items_in_cart x bytes_per_item",
    "token_bytes": "a cart carried in a signed token: the cart plus the token's overhead",
    "relogin_cost_usd": "what one lost cart costs you: cart_value_usd x abandon_rate",
    "crashes_per_server_per_month": "facts['restarts_per_month']",
}


@question("08.shopping_cart", points=3, hints=[
    "A restart of a server that keeps carts in memory empties every cart on it. What"
    " does one lost cart cost? Not its whole value: only the share of shoppers who give up.",
    "session_bytes is the cart (items x bytes per item); token_bytes is the same cart"
    " carried in a signed token, plus the token's overhead.",
    "relogin_cost_usd = cart_value_usd * abandon_rate; then"
    " choice = lk.CostModel(**inputs).choose().",
])
def shopping_cart(plan_cart: Callable[[dict], Any]) -> str:
    "Plan a shop whose carts must survive restarts (or not)."
    ctx = context()
    facts = _varied(lambda: [shopping_cart_facts(ctx.rng, risky=True),
                             shopping_cart_facts(ctx.rng, risky=False),
                             shopping_cart_facts(ctx.rng)], shopping_cart_inputs)
    if ctx.hidden:
        facts += [shopping_cart_facts(ctx.rng) for _ in range(4)]
        facts.append({**shopping_cart_facts(ctx.rng, risky=True), "items_in_cart": 200})
    picks = _run_plan(plan_cart, facts, shopping_cart_inputs, _CART_WHY,
                      lambda f: f"A shop of {f['shoppers']:,} shoppers with"
                                f" {f['items_in_cart']} items per cart")
    del picks
    return ("Your plan priced lost carts and picked what the model picks in every shop,"
            " careless and costly ones.")


_API_WHY = {
    "users": "facts['clients']",
    "requests_per_user_per_minute": "facts['requests_per_client_per_minute']",
    "service_time_ms": "facts['service_time_ms']",
    "session_bytes": "an anonymous REST API remembers nothing between requests",
    "cookie_bytes": "anonymous clients carry no session cookie",
    "token_bytes": "anonymous clients carry no token",
    "relogin_cost_usd": "with nothing remembered, a crash loses nothing",
    "verify_ms": "there is no token to verify",
    "lookup_ms": "there is no session to look up",
}


@question("08.public_api", points=3, hints=[
    "Anonymous clients, complete requests: nothing is remembered, carried or checked, so"
    " session_bytes, cookie_bytes, token_bytes, verify_ms, lookup_ms and relogin_cost_usd"
    " are all 0.",
    "With nothing to remember, the contest is servers (the 'tokens' design is the"
    " stateless fleet) against functions ('serverless'): model.break_even('tokens',"
    " 'serverless', vary='users', lo=1, hi=1e9).",
    "Return {'inputs': ..., 'design': choice.design, 'reason': choice.reason,"
    " 'break_even_clients': points[0].at}.",
])
def public_api(plan_api: Callable[[dict], Any]) -> str:
    "Plan a public REST API and find where servers start to beat functions."
    ctx = context()
    facts = _varied(lambda: [public_api_facts(ctx.rng, busy=False),
                             public_api_facts(ctx.rng, busy=True)], public_api_inputs)
    if ctx.hidden:
        facts += [public_api_facts(ctx.rng) for _ in range(4)]
    picks = _run_plan(plan_api, facts, public_api_inputs, _API_WHY,
                      lambda f: f"An API for {f['clients']:,} clients")
    for f in facts:
        what = f"An API for {f['clients']:,} clients"
        got = plan_api(dict(f)).get("break_even_clients")
        want = public_api_break_even(f)
        if isinstance(got, bool) or not isinstance(got, (int, float)) or not math.isfinite(got):
            raise CheckFailed(f"{what}: answer['break_even_clients'] should be a number of"
                              f" clients, not {_short(got)}.")
        if abs(got - want) > 0.05 * want:
            raise CheckFailed(
                f"{what}: servers and functions cost the same at about {want:,.0f} clients"
                f" (break-even of 'tokens' and 'serverless' as users vary), not {got:,.0f}.")
    del picks
    return ("Your plan found the break-even and picked what the model picks for every"
            " API, quiet and busy.")
