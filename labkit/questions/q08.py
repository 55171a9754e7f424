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
from ..choosing.cost import DESIGNS, CostModel
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


def shopping_cart_facts(rng: random.Random, *, risky: bool | None = None,
                        big: bool = False) -> dict:
    """A shop: shoppers, cart sizes, what a lost cart costs, how often servers restart.

    ``big`` draws a wholesale cart of hundreds of items: carried in a token, it takes
    longer to upload than the model's default latency budget allows.
    """
    risky = rng.random() < 0.5 if risky is None else risky
    return {
        "shoppers": rng.choice([1_000, 4_000, 20_000, 60_000]),
        "page_views_per_minute": rng.choice([2, 4, 6]),
        "items_in_cart": rng.randint(200, 600) if big else rng.randint(1, 12),
        "bytes_per_item": rng.choice([150, 400]) if big else rng.choice([80, 150, 400]),
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


BREAK_EVEN_TOLERANCE = 0.01   # a break-even rounded to three figures is still right


def public_api_break_even(facts: dict) -> float:
    """Clients at which stateless servers and functions cost the same."""
    model = CostModel(**public_api_inputs(facts))
    points = model.break_even("tokens", "serverless", vary="users", lo=1, hi=1e9)
    return points[0].at


# -- judging one answer -------------------------------------------------------------
# A plan runs in the learner's kernel and could rewrite the model the check judges it
# with (lk.CostModel.choose = ...). The check works out every expected value before it
# calls the plan, and after each call makes sure the model is still the model.
def _model_state() -> tuple[dict, dict]:
    from ..choosing import cost

    classes = (cost.CostModel, cost.Estimate, cost.CostTable, cost.Choice, cost.BreakEven)
    return {c: dict(vars(c)) for c in classes}, {m: dict(vars(m)) for m in _modules()}


def _modules() -> tuple:
    """The model's module and this one (the check's own rules live here)."""
    import sys

    from ..choosing import cost

    return cost, sys.modules[__name__]


def _changed_model(before: tuple[dict, dict]) -> list[str]:
    """Names in the cost model (or this check) that a plan rebound; puts them back."""
    classes, module = before
    changed = []
    for cls, saved in classes.items():
        now = vars(cls)
        for name in sorted(set(now) | set(saved)):
            if name in ("__dict__", "__weakref__") or now.get(name, _MISSING) is saved.get(name, _MISSING):
                continue
            changed.append(f"{cls.__name__}.{name}")
            if name in saved:
                setattr(cls, name, saved[name])
            else:
                delattr(cls, name)
    for mod, saved in module.items():
        now = vars(mod)
        for name in sorted(set(now) | set(saved)):
            if now.get(name, _MISSING) is not saved.get(name, _MISSING):
                changed.append(f"{mod.__name__}.{name}")
                if name not in saved:
                    del now[name]
        now.update(saved)
    return changed


_MISSING = object()


def _plan_answer(plan: Callable[[dict], Any], facts: dict, what: str) -> dict:
    given = dict(facts)                  # a copy: the check's facts stay as drawn
    before = _model_state()
    answer = plan(given)
    changed = _changed_model(before)
    if changed:
        raise CheckFailed(f"{what}: your plan changed the cost model or this check ({changed[0]});"
                          " a plan builds models and asks them, it does not rewrite them.")
    if given != facts:
        key = next((k for k in sorted(set(facts) | set(given), key=str)
                    if given.get(k, _MISSING) != facts.get(k, _MISSING)), "?")
        raise CheckFailed(f"{what}: your plan changed the facts it was given"
                          f" (facts[{key!r}]); a plan reads the scenario and leaves it as it"
                          " is: work on a copy (dict(facts)) if you need one.")
    if not isinstance(answer, dict) or not {"inputs", "design", "reason"} <= set(answer):
        raise CheckFailed(f"{what}: your plan should return a dict with 'inputs', 'design'"
                          f" and 'reason', but it returned {_short(answer)}.")
    answer = dict(answer)                # what it says now: judged once, never re-read
    if not isinstance(answer["inputs"], dict):
        raise CheckFailed(f"{what}: answer['inputs'] should be a dict of the model's inputs"
                          f" (e.g. {{'users': ...}}), not {_short(answer['inputs'])}.")
    inputs = dict(answer["inputs"])
    if not all(isinstance(k, str) for k in inputs):
        raise CheckFailed(f"{what}: the keys of answer['inputs'] should be input names.")
    answer["inputs"] = {str.__str__(k): v for k, v in inputs.items()}
    return answer


def _number(value: Any) -> float | None:
    """``value`` as a plain float, or None when it is not a finite number.

    A subclass of int or float is judged by its value, never by its own operators
    (a float whose ``__eq__`` says yes to everything is still the number it holds).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        plain = float.__float__(value) if isinstance(value, float) else float(int.__int__(value))
    except OverflowError:                # an int too large for a float
        return None
    return plain if math.isfinite(plain) else None


def _text(value: Any) -> str | None:
    """``value`` as a plain str (a subclass judged by its characters), or None."""
    return str.__str__(value) if isinstance(value, str) else None


def _model(inputs: dict, what: str) -> CostModel:
    if not all(type(k) is str for k in inputs):
        raise CheckFailed(f"{what}: the keys of answer['inputs'] should be input names.")
    plain = {}
    for name, value in inputs.items():
        number = _number(value)
        if number is None:
            raise CheckFailed(f"{what}: inputs[{name!r}] should be a finite number,"
                              f" not {_short(value)}.")
        plain[name] = int(number) if number.is_integer() and isinstance(value, int) else number
    try:
        return CostModel().replace(**plain)
    except CostModelError as exc:
        raise CheckFailed(f"{what}: the model refused your inputs: {exc}") from None


def _allowed(name: str, want: float) -> float:
    """How far an input may be from the facts' value: rounding, not a missing term.

    Sizes in bytes may be rounded to about ten bytes (or 0.2% of a large one): a
    token's overhead of a few hundred bytes left out, or copied from the example
    instead of the facts, is not rounding.
    """
    if name.endswith("_bytes"):
        return 8 + 0.002 * abs(want)
    return TOLERANCE * abs(want) + 1e-9


def _judge_inputs(inputs: dict, expected: dict, why: dict, what: str) -> dict:
    """Each expected input against the facts; returns the learner's values as floats."""
    mine = {}
    for name, want in expected.items():
        if name not in inputs:
            raise CheckFailed(f"{what}: set inputs[{name!r}] ({why[name]}).")
        got = _number(inputs[name])
        if got is None:
            raise CheckFailed(f"{what}: inputs[{name!r}] should be a finite number"
                              f" ({why[name]}), not {_short(inputs[name])}.")
        # The message names the rule and what the plan set, never the expected value:
        # a failed check can be replayed with its seed, and must not hand out answers.
        if abs(got - want) > _allowed(name, want):
            raise CheckFailed(f"{what}: inputs[{name!r}] should be {why[name]}, but your"
                              f" plan set {got:,g}.")
        mine[name] = got
    defaults = CostModel().inputs()
    for name in sorted(set(inputs) - set(expected), key=str):
        got = _number(inputs[name])
        default = defaults.get(name)
        if got is None or default is None:
            continue                     # the model itself refuses these, with a reason
        if abs(got - default) > TOLERANCE * abs(default) + 1e-9:
            raise CheckFailed(f"{what}: inputs[{name!r}] is not one of this scenario's"
                              " facts, so it keeps the model's default; your plan set"
                              f" {got:,g}. Set only what the facts say.")
    return mine


def _reason_holds(table: Any, budget: float, design: str, reason: str) -> bool:
    mine = table[design]
    cheapest = min(e.total_usd_per_month for e in table)
    if reason == "cheapest":
        return mine.total_usd_per_month <= cheapest * 1.001 + 1e-9
    fits = mine.state_ms_p50 <= budget
    cheaper_miss = any(e.total_usd_per_month < mine.total_usd_per_month
                       and e.state_ms_p50 > budget for e in table)
    fastest = mine.state_ms_p50 <= min(e.state_ms_p50 for e in table) + 1e-12
    nothing_fits = all(e.state_ms_p50 > budget for e in table)
    return (fits and cheaper_miss) or (nothing_fits and fastest)


def _judge_choice(answer: dict, truth: tuple, theirs: CostModel, what: str) -> str:
    """The design and reason against the model of the facts (worked out beforehand)."""
    design, reason = _text(answer["design"]), _text(answer["reason"])
    if design not in DESIGNS:
        raise CheckFailed(f"{what}: answer['design'] should be one of {', '.join(DESIGNS)},"
                          f" not {_short(answer['design'])}.")
    if reason not in REASONS:
        raise CheckFailed(f"{what}: answer['reason'] should be one of {', '.join(REASONS)},"
                          f" not {_short(answer['reason'])}.")
    truth_choice, truth_table, budget = truth
    # Judge against the model of the facts; a plan whose inputs were rounded (within
    # the tolerance) may also follow the model of its own inputs near a break-even.
    judges = [(truth_table, budget)] if truth_choice.design == design else []
    if theirs.choose().design == design:
        judges.append((theirs.table(), theirs.latency_budget_ms))
    if not judges:
        raise CheckFailed(
            f"{what}: {design} is not what the model picks for these facts. Build"
            " lk.CostModel(**inputs) and compare every design's total and added latency"
            " (model.table()) against the latency budget, or ask model.choose().")
    if not any(_reason_holds(table, b, design, reason) for table, b in judges):
        raise CheckFailed(
            f"{what}: {design} is right, but the reason {reason!r} does not hold:"
            " 'cheapest' means no design costs less; 'latency' means cheaper designs add"
            f" more than the budget ({budget:g} ms), or none fits and this is the fastest.")
    return design


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__ must not break the message
        text = f"a {type(value).__name__}"
    return text if len(text) <= 60 else text[:57] + "..."


def _varied(draw: Callable[[], list[dict]], inputs_of: Callable[[dict], dict], *,
            reasons: bool = True, designs: frozenset = frozenset()) -> list[dict]:
    """Scenarios whose right answers differ, so a plan that always gives one answer fails.

    At least two designs win (and, with ``reasons``, both reason codes are right
    somewhere), every design in ``designs`` wins somewhere, and every fact takes two
    different values in the first two scenarios (drawn alike), so a number copied from
    the visible example instead of read from the facts is wrong in one of them at least.
    """
    for _ in range(200):
        facts = draw()
        choices = [CostModel(**inputs_of(f)).choose() for f in facts]
        picked = {c.design for c in choices}
        if (len(picked) >= 2 and designs <= picked
                and (not reasons or {c.reason for c in choices} == set(REASONS))
                and all(facts[0][k] != facts[1][k] for k in facts[0])):
            return facts
    return facts


def _two_unlike(draw_one: Callable[[], dict]) -> list[dict]:
    """Two scenarios of one kind that differ in every fact (each fact is drawn alone)."""
    first, pool = draw_one(), [draw_one() for _ in range(30)]
    second = {k: next((p[k] for p in pool if p[k] != first[k]), pool[0][k]) for k in first}
    return [first, second]


def _run_plan(plan: Callable, facts_list: list[dict], expected_of: Callable[[dict], dict],
              why: dict, label: Callable[[dict], str]) -> list[dict]:
    """Call the plan once per scenario and judge it; returns its answers."""
    if not callable(plan):
        raise CheckFailed(f"Pass your plan function itself, not {_short(plan)}.")
    answers = []
    for facts in facts_list:
        what = label(facts)
        expected = expected_of(facts)
        truth_model = CostModel(**expected)
        truth = (truth_model.choose(), truth_model.table(), truth_model.latency_budget_ms)
        answer = _plan_answer(plan, facts, what)
        mine = _judge_inputs(answer["inputs"], expected, why, what)
        _model(answer["inputs"], what)    # every input must be one the model takes
        # Judge with the facts' inputs only (any others were checked to be defaults).
        theirs = CostModel(**mine)
        _judge_choice(answer, truth, theirs, what)
        answers.append(answer)
    return answers



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
    facts = _varied(lambda: [*_two_unlike(lambda: growing_context_facts(ctx.rng, long=False)),
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
    # Small and wholesale carts, in shops that can and cannot afford to lose them.
    facts = _varied(lambda: [shopping_cart_facts(ctx.rng, risky=True),
                             shopping_cart_facts(ctx.rng, risky=False),
                             shopping_cart_facts(ctx.rng, risky=True, big=True),
                             shopping_cart_facts(ctx.rng, risky=False, big=True)],
                    shopping_cart_inputs,
                    designs=frozenset({"sticky"}))   # a shop that can afford to lose carts
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
    "session_bytes": "0: an anonymous REST API remembers nothing between requests",
    "cookie_bytes": "0: anonymous clients carry no session cookie",
    "token_bytes": "0: anonymous clients carry no token",
    "relogin_cost_usd": "0: with nothing remembered, a crash loses nothing",
    "verify_ms": "0: there is no token to verify",
    "lookup_ms": "0: there is no session to look up",
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
    # Nothing is carried, so no design breaks the latency budget: the reason is always
    # "cheapest" here, and only the designs need to differ.
    facts = _varied(lambda: [public_api_facts(ctx.rng, busy=False),
                             public_api_facts(ctx.rng, busy=True)], public_api_inputs,
                    reasons=False)
    if ctx.hidden:
        facts += [public_api_facts(ctx.rng) for _ in range(4)]
    answers = _run_plan(plan_api, facts, public_api_inputs, _API_WHY,
                        lambda f: f"An API for {f['clients']:,} clients")
    for f, answer in zip(facts, answers):
        _judge_break_even(f, answer, f"An API for {f['clients']:,} clients")
    return ("Your plan found the break-even and picked what the model picks for every"
            " API, quiet and busy.")


def _judge_break_even(facts: dict, answer: dict, what: str) -> None:
    if "break_even_clients" not in answer:
        raise CheckFailed(f"{what}: add answer['break_even_clients'], the number of clients"
                          " at which stateless servers and functions cost the same.")
    got = _number(answer["break_even_clients"])
    if got is None or got <= 0:
        raise CheckFailed(f"{what}: answer['break_even_clients'] should be a positive, finite"
                          f" number of clients, not {_short(answer['break_even_clients'])}.")
    want = public_api_break_even(facts)
    if abs(got - want) > BREAK_EVEN_TOLERANCE * want:
        # Say which side of the break-even their number is on, never where it is.
        model = CostModel(**{**public_api_inputs(facts), "users": got})
        cheaper = "servers ('tokens')" if model.total("tokens") < model.total("serverless") \
            else "functions ('serverless')"
        raise CheckFailed(
            f"{what}: servers and functions do not cost the same at {got:,.0f} clients:"
            f" there {cheaper} still cost less. break_even_clients is where the totals of"
            " 'tokens' and 'serverless' cross as users vary (model.break_even(...)), with"
            " the inputs of this API.")
