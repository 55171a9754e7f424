"""Wrong and valid answers to the three graded questions of exercises 08 (choosing).

Written blind (phase 1): from the exercise text, chapter 08 and the public docstrings
of ``lk.CostModel`` only, without reading the checks. Each row of ``CASES`` is

    (question id, name, kind, valid, factory)

and ``factory()`` returns the answers tuple a learner would pass to ``lk.check`` after
the id. ``kind`` sorts the wrong answers into the classes a learner who games a check
would try (tests/exercise_kit.py's KINDS); valid rows have kind "valid".
"""
from __future__ import annotations

import math
import random

import labkit as lk
from labkit.choosing import cost as _cost

EXAMPLE_CHAT = {"users": 5_000, "messages_per_minute": 2, "turns": 400, "bytes_per_turn": 600,
                "token_overhead_bytes": 250, "uplink_mbps": 10.0, "latency_budget_ms": 50.0,
                "lost_conversation_usd": 0.005, "restarts_per_month": 4}
EXAMPLE_CART = {"shoppers": 20_000, "page_views_per_minute": 4, "items_in_cart": 6,
                "bytes_per_item": 150, "token_overhead_bytes": 250, "cart_value_usd": 45.0,
                "abandon_rate": 0.1, "restarts_per_month": 8}
EXAMPLE_API = {"clients": 1_000, "requests_per_client_per_minute": 2.0, "service_time_ms": 20.0}

CHAT, CART, API = "08.growing_context", "08.shopping_cart", "08.public_api"


def _pick(inputs: dict) -> dict:
    design, reason = lk.CostModel(**inputs).choose()
    return {"inputs": inputs, "design": design, "reason": reason}


# -- the reading of each task a careful learner writes -------------------------------
def chat_inputs(f: dict) -> dict:
    held = f["turns"] * f["bytes_per_turn"]
    return {"users": f["users"], "requests_per_user_per_minute": f["messages_per_minute"],
            "session_bytes": held, "token_bytes": held + f["token_overhead_bytes"],
            "client_uplink_mbps": f["uplink_mbps"], "latency_budget_ms": f["latency_budget_ms"],
            "relogin_cost_usd": f["lost_conversation_usd"],
            "crashes_per_server_per_month": f["restarts_per_month"]}


def cart_inputs(f: dict) -> dict:
    held = f["items_in_cart"] * f["bytes_per_item"]
    return {"users": f["shoppers"], "requests_per_user_per_minute": f["page_views_per_minute"],
            "session_bytes": held, "token_bytes": held + f["token_overhead_bytes"],
            "relogin_cost_usd": f["cart_value_usd"] * f["abandon_rate"],
            "crashes_per_server_per_month": f["restarts_per_month"]}


ZEROS = dict.fromkeys(("session_bytes", "cookie_bytes", "token_bytes", "relogin_cost_usd",
                       "verify_ms", "lookup_ms"), 0)


def api_inputs(f: dict) -> dict:
    return {"users": f["clients"], "requests_per_user_per_minute": f["requests_per_client_per_minute"],
            "service_time_ms": f["service_time_ms"], **ZEROS}


def api_break_even(inputs: dict, *, a="tokens", b="serverless", vary="users", lo=1, hi=1e9):
    points = lk.CostModel(**inputs).break_even(a, b, vary=vary, lo=lo, hi=hi)
    return points[0].at if points else None


def ref_chat(f):
    return _pick(chat_inputs(f))


def ref_cart(f):
    return _pick(cart_inputs(f))


def ref_api(f):
    inputs = api_inputs(f)
    return {**_pick(inputs), "break_even_clients": api_break_even(inputs)}


# -- tricks shared by several questions ----------------------------------------------
class AnyStr(str):
    """A string that says it equals everything (a classic way to game ==)."""

    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = str.__hash__


class AnyNumber(float):
    """A float that equals everything and is close to everything."""

    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    def __sub__(self, other):
        return 0.0

    def __rsub__(self, other):
        return 0.0

    def __abs__(self):
        return 0.0

    def __lt__(self, other):
        return False

    def __gt__(self, other):
        return False

    def __le__(self, other):
        return True

    def __ge__(self, other):
        return True

    __hash__ = float.__hash__


def frozen_to(example_facts, ref):
    """Visible-only: the answer worked out once for the example, returned for every scenario."""
    answer = ref(example_facts)
    return lambda facts: answer


def always(ref, design, reason):
    def plan(facts):
        out = ref(facts)
        return {**out, "design": design, "reason": reason}
    return plan


def right_inputs_fixed_reason(ref, reason):
    def plan(facts):
        return {**ref(facts), "reason": reason}
    return plan


def design_by_cheapest(ref):
    """Picks model.cheapest() and calls it 'cheapest': ignores the latency budget."""
    def plan(facts):
        out = ref(facts)
        return {**out, "design": lk.CostModel(**out["inputs"]).cheapest(), "reason": "cheapest"}
    return plan


def pick_from_right_model_report_wrong_inputs(ref, spoil):
    """The design and reason come from the right inputs; the reported inputs are spoiled."""
    def plan(facts):
        out = ref(facts)
        return {**out, "inputs": spoil(dict(out["inputs"]), facts)}
    return plan


def report_right_inputs_pick_from_wrong(ref, spoil):
    """Reports the right inputs, but picks from a spoiled model."""
    def plan(facts):
        out = ref(facts)
        wrong = spoil(dict(out["inputs"]), facts)
        design, reason = lk.CostModel(**wrong).choose()
        return {**out, "design": design, "reason": reason}
    return plan


def consistent_wrong(ref, spoil):
    """Spoiled inputs, and the pick the model makes from them (self-consistent, wrong)."""
    def plan(facts):
        out = ref(facts)
        extra = {k: v for k, v in out.items() if k not in ("inputs", "design", "reason")}
        wrong = spoil(dict(out["inputs"]), facts)
        picked = _pick(wrong)
        if "break_even_clients" in extra:
            extra["break_even_clients"] = api_break_even(wrong)
        return {**picked, **extra}
    return plan


def with_field(ref, key, value):
    def plan(facts):
        out = ref(facts)
        out["inputs"] = {**out["inputs"], key: value}
        return out
    return plan


def top(ref, key, value):
    def plan(facts):
        return {**ref(facts), key: value}
    return plan


def mutates_facts(ref):
    def plan(facts):
        out = ref(facts)
        for k in list(facts):
            if isinstance(facts[k], (int, float)):
                facts[k] = facts[k] * 2     # "normalises" the scenario in place
        return out
    return plan


def clears_facts(ref):
    def plan(facts):
        out = ref(facts)
        facts.clear()
        return out
    return plan


def patches_model(ref, design, reason):
    """Monkeypatches CostModel.choose/cheapest so the model agrees with a fixed pick."""
    def plan(facts):
        out = ref(facts)
        lk.CostModel.choose = lambda self: _cost.Choice(design, reason)
        lk.CostModel.cheapest = lambda self: design
        return {**out, "design": design, "reason": reason}
    return plan


def patches_defaults(ref):
    """Changes the model's price constants in place so everything costs nothing."""
    def plan(facts):
        out = ref(facts)
        _cost.HOURS_PER_MONTH = 0
        _cost.SECONDS_PER_MONTH = 0
        return {**out, "design": "tokens", "reason": "cheapest"}
    return plan


def patches_check(ref):
    """Rewrites the check's own rule for the inputs so that its own answer is 'expected'."""
    def plan(facts):
        import labkit.questions.q08 as q

        out = ref(facts)
        q.growing_context_inputs = q.shopping_cart_inputs = q.public_api_inputs = \
            lambda f, _i=dict(out["inputs"]): _i
        q._judge_choice = lambda answer, *a: answer["design"]
        return {**out, "design": "sticky", "reason": "cheapest"}
    return plan


class Flipping(dict):
    """A dict that holds a wrong answer but shows the right one to every ``[key]`` read."""

    def __init__(self, right, wrong):
        super().__init__(wrong)
        self.right = right

    def __getitem__(self, key):
        return self.right[key]

    def get(self, key, default=None):
        return self.right.get(key, default)


def flipping(ref):
    def plan(facts):
        out = ref(facts)
        bad = {**out, "design": "sticky" if out["design"] != "sticky" else "tokens"}
        return Flipping(out, bad)
    return plan


def huge_int_users(ref):
    def plan(facts):
        out = ref(facts)
        return {**out, "inputs": {**out["inputs"], "users": 10**400}}
    return plan


def random_pick(ref):
    def plan(facts):
        out = ref(facts)
        # a coin toss among the designs the model does not pick (unseeded, as learners do)
        return {**out, "design": random.choice([d for d in lk.CostModel.DESIGNS
                                                if d != out["design"]]),
                "reason": random.choice(["cheapest", "latency"])}
    return plan


def lying_design(ref):
    def plan(facts):
        out = ref(facts)
        return {**out, "design": AnyStr("sticky"), "reason": AnyStr("cheapest")}
    return plan


def as_tuple(ref):
    def plan(facts):
        out = ref(facts)
        return (out["inputs"], out["design"], out["reason"])
    return plan


def returns_choice(ref):
    def plan(facts):
        out = ref(facts)
        return lk.CostModel(**out["inputs"]).choose()
    return plan


def returns_model_as_inputs(ref):
    def plan(facts):
        out = ref(facts)
        return {**out, "inputs": lk.CostModel(**out["inputs"])}
    return plan


def nan_inputs(ref):
    def plan(facts):
        out = ref(facts)
        return {**out, "inputs": {k: float("nan") for k in out["inputs"]}}
    return plan


def string_inputs(ref):
    def plan(facts):
        out = ref(facts)
        return {**out, "inputs": {k: str(v) for k, v in out["inputs"].items()}}
    return plan


def huge_users(ref):
    def plan(facts):
        out = ref(facts)
        return {**out, "inputs": {**out["inputs"], "users": 1e300}}
    return plan


def negative_users(ref):
    def plan(facts):
        out = ref(facts)
        return {**out, "inputs": {**out["inputs"], "users": -out["inputs"]["users"]}}
    return plan


def returns_none(ref):
    return lambda facts: None


def raises_sometimes(ref):
    """Right for long conversations, crashes on a short one (a KeyError of its own)."""
    def plan(facts):
        if facts.get("turns", 0) < 10:
            return {"inputs": {}, "design": "tokens", "reason": "cheapest"}["missing"]
        return ref(facts)
    return plan


def gamed_budget(ref, **extra):
    """Adds inputs that are not in the scenario, to steer the model's pick."""
    def plan(facts):
        out = ref(facts)
        inputs = {**out["inputs"], **extra}
        return _pick(inputs) | {k: v for k, v in out.items()
                                if k not in ("inputs", "design", "reason")}
    return plan


# -- valid alternatives ----------------------------------------------------------------
def valid_replace(ref_inputs):
    """Through model.replace() on a default model, unpacking the Choice as a tuple."""
    def plan(facts):
        model = lk.CostModel().replace(**ref_inputs(facts))
        design, reason = model.choose()
        return {"design": design, "reason": reason, "inputs": ref_inputs(facts)}
    return plan


def valid_by_hand(ref_inputs):
    """Re-implements choose(): cheapest of the designs that fit the budget, by hand."""
    def plan(facts):
        inputs = ref_inputs(facts)
        model = lk.CostModel(**inputs)
        table = model.table()
        prefer = ("tokens", "serverless", "store", "sticky")
        order = sorted(table, key=lambda e: (round(e.total_usd_per_month, 6), prefer.index(e.design)))
        ok = [e for e in order if e.state_ms_p50 <= model.latency_budget_ms]
        if ok:
            design = ok[0].design
            reason = "cheapest" if ok[0] is order[0] else "latency"
        else:
            design, reason = min(table, key=lambda e: e.state_ms_p50).design, "latency"
        return {"inputs": {k: float(v) for k, v in inputs.items()}, "design": design,
                "reason": reason}
    return plan


def valid_all_inputs(ref_inputs):
    """Reports every input of the model (model.inputs()), defaults included."""
    def plan(facts):
        model = lk.CostModel(**ref_inputs(facts))
        c = model.choose()
        return {"inputs": model.inputs(), "design": c.design, "reason": c.reason}
    return plan


def valid_defaults_spelled_out(ref_inputs):
    """Adds a few inputs at their default values (harmless extras)."""
    def plan(facts):
        d = lk.CostModel()
        inputs = {**ref_inputs(facts), "request_bytes": d.request_bytes,
                  "response_bytes": d.response_bytes, "workers": d.workers}
        return _pick(inputs) | {"note": "defaults for the rest"}
    return plan


def valid_copies_facts(ref_inputs):
    """Works on a copy of the facts and never touches the original."""
    def plan(facts):
        f = dict(facts)
        return _pick(ref_inputs(f))
    return plan


# chat -- spoilers
def chat_kb(i, f):
    i["session_bytes"] /= 1000
    i["token_bytes"] = i["session_bytes"] + f["token_overhead_bytes"] / 1000
    return i


def chat_token_overhead_only(i, f):
    i["token_bytes"] = f["token_overhead_bytes"]
    return i


def chat_per_second(i, f):
    i["requests_per_user_per_minute"] = f["messages_per_minute"] / 60
    return i


def chat_uplink_bytes(i, f):
    i["client_uplink_mbps"] = f["uplink_mbps"] * 8      # treats MB/s as Mbit/s the wrong way
    return i


def chat_from_chapter(i, f):
    i.update(users=10_000, requests_per_user_per_minute=2.0)   # the chapter's defaults
    return i


def chat_no_loss(i, f):
    i["relogin_cost_usd"] = 0.0
    return i


def chat_turns_only(i, f):
    i["session_bytes"] = f["turns"]
    i["token_bytes"] = f["turns"] + f["token_overhead_bytes"]
    return i


def chat_restarts_per_day(i, f):
    i["crashes_per_server_per_month"] = f["restarts_per_month"] * 30
    return i


def chat_swapped_budget(i, f):
    i["latency_budget_ms"] = f["latency_budget_ms"] / 1000   # ms read as seconds
    return i


# cart -- spoilers
def cart_full_value(i, f):
    i["relogin_cost_usd"] = f["cart_value_usd"]
    return i


def cart_abandon_only(i, f):
    i["relogin_cost_usd"] = f["abandon_rate"]
    return i


def cart_no_overhead(i, f):
    i["token_bytes"] = i["session_bytes"]
    return i


def cart_items_only(i, f):
    i["session_bytes"] = f["items_in_cart"]
    i["token_bytes"] = f["items_in_cart"] + f["token_overhead_bytes"]
    return i


def cart_from_example(i, f):
    i["users"] = EXAMPLE_CART["shoppers"]
    return i


def cart_hourly(i, f):
    i["requests_per_user_per_minute"] = f["page_views_per_minute"] * 60
    return i


def cart_restarts_per_year(i, f):
    i["crashes_per_server_per_month"] = f["restarts_per_month"] / 12
    return i


# api -- spoilers
def api_defaults_left(i, f):
    for k in ("verify_ms", "lookup_ms", "token_bytes", "cookie_bytes"):
        i.pop(k)
    return i


def api_session_default(i, f):
    i.pop("session_bytes")
    i.pop("relogin_cost_usd")
    return i


def api_seconds(i, f):
    i["service_time_ms"] = f["service_time_ms"] / 1000
    return i


def api_per_second(i, f):
    i["requests_per_user_per_minute"] = f["requests_per_client_per_minute"] / 60
    return i


def api_from_example(i, f):
    i["users"] = EXAMPLE_API["clients"]
    return i


def api_be(make):
    """A plan whose break_even_clients comes from ``make(inputs, facts)``."""
    def plan(facts):
        out = ref_api(facts)
        out["break_even_clients"] = make(out["inputs"], facts)
        return out
    return plan


def _be_points(inputs, facts):
    return lk.CostModel(**inputs).break_even("tokens", "serverless", vary="users", lo=1, hi=1e9)


def _be_wrong_pair(inputs, facts):
    return api_break_even(inputs, a="store", b="serverless")


def _be_requests_per_second(inputs, facts):
    be = api_break_even(inputs)
    return be * inputs["requests_per_user_per_minute"] / 60


def _be_vary_rate(inputs, facts):
    pts = lk.CostModel(**inputs).break_even("tokens", "serverless",
                                            vary="requests_per_user_per_minute", lo=1e-3, hi=1e4)
    return pts[0].at if pts else None


def _be_narrow_range(inputs, facts):
    return api_break_even(inputs, lo=10, hi=100) or 0


def _be_chapter_model(inputs, facts):
    return api_break_even(lk.CostModel().inputs())


def _be_example(inputs, facts):
    return api_break_even(api_inputs(EXAMPLE_API))


def _be_nan(inputs, facts):
    return float("nan")


def _be_inf(inputs, facts):
    return float("inf")


def _be_negative(inputs, facts):
    return -api_break_even(inputs)


def _be_string(inputs, facts):
    return str(api_break_even(inputs))


def _be_any(inputs, facts):
    return AnyNumber(1.0)


def _be_bool(inputs, facts):
    return True


def _be_rounded_far(inputs, facts):
    return round(api_break_even(inputs), -3) + 1000     # off by a lot


def _be_defaults_left(inputs, facts):
    return api_break_even(api_defaults_left(dict(inputs), facts))


def _be_int(inputs, facts):
    return int(round(api_break_even(inputs)))


def _be_analytic(inputs, facts):
    """Bisection by hand on model.total, no break_even()."""
    m = lk.CostModel(**inputs)
    lo, hi = 1.0, 1e9
    g = lambda u: m.replace(users=u).total("tokens") - m.replace(users=u).total("serverless")
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if (g(mid) < 0) == (g(lo) < 0):
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _be_sticky_pair(inputs, facts):
    # with nothing carried and nothing checked, sticky servers cost what stateless ones do
    return api_break_even(inputs, a="serverless", b="sticky", lo=0.5, hi=1e8)


def _be_wide(inputs, facts):
    return api_break_even(inputs, lo=1e-3, hi=1e12)


CASES = [
    # ---------------------------------------------------------------- 08.growing_context
    (CHAT, "example-frozen", "visible-only", False, lambda: (frozen_to(EXAMPLE_CHAT, ref_chat),)),
    (CHAT, "always-sticky-cheapest", "visible-only", False, lambda: (always(ref_chat, "sticky", "cheapest"),)),
    (CHAT, "always-tokens-cheapest", "visible-only", False, lambda: (always(ref_chat, "tokens", "cheapest"),)),
    (CHAT, "always-store-latency", "visible-only", False, lambda: (always(ref_chat, "store", "latency"),)),
    (CHAT, "chapter-users-rate", "substance", False, lambda: (consistent_wrong(ref_chat, chat_from_chapter),)),
    (CHAT, "session-in-kb", "substance", False, lambda: (consistent_wrong(ref_chat, chat_kb),)),
    (CHAT, "token-overhead-only", "substance", False, lambda: (consistent_wrong(ref_chat, chat_token_overhead_only),)),
    (CHAT, "messages-per-second", "substance", False, lambda: (consistent_wrong(ref_chat, chat_per_second),)),
    (CHAT, "uplink-times-8", "substance", False, lambda: (consistent_wrong(ref_chat, chat_uplink_bytes),)),
    (CHAT, "no-loss-cost", "substance", False, lambda: (consistent_wrong(ref_chat, chat_no_loss),)),
    (CHAT, "turns-not-bytes", "substance", False, lambda: (consistent_wrong(ref_chat, chat_turns_only),)),
    (CHAT, "restarts-times-30", "substance", False, lambda: (consistent_wrong(ref_chat, chat_restarts_per_day),)),
    (CHAT, "budget-in-seconds", "substance", False, lambda: (consistent_wrong(ref_chat, chat_swapped_budget),)),
    (CHAT, "right-pick-inputs-in-kb", "logic", False,
     lambda: (pick_from_right_model_report_wrong_inputs(ref_chat, chat_kb),)),
    (CHAT, "right-inputs-pick-from-kb", "logic", False,
     lambda: (report_right_inputs_pick_from_wrong(ref_chat, chat_kb),)),
    (CHAT, "reason-always-cheapest", "logic", False, lambda: (right_inputs_fixed_reason(ref_chat, "cheapest"),)),
    (CHAT, "reason-always-latency", "logic", False, lambda: (right_inputs_fixed_reason(ref_chat, "latency"),)),
    (CHAT, "cheapest-ignores-budget", "logic", False, lambda: (design_by_cheapest(ref_chat),)),
    (CHAT, "random-pick", "logic", False, lambda: (random_pick(ref_chat),)),
    (CHAT, "lying-str-design", "hostile-input", False, lambda: (lying_design(ref_chat),)),
    (CHAT, "nan-inputs", "hostile-input", False, lambda: (nan_inputs(ref_chat),)),
    (CHAT, "string-inputs", "hostile-input", False, lambda: (string_inputs(ref_chat),)),
    (CHAT, "huge-users", "hostile-input", False, lambda: (huge_users(ref_chat),)),
    (CHAT, "negative-users", "hostile-input", False, lambda: (negative_users(ref_chat),)),
    (CHAT, "returns-none", "hostile-input", False, lambda: (returns_none(ref_chat),)),
    (CHAT, "returns-tuple", "hostile-input", False, lambda: (as_tuple(ref_chat),)),
    (CHAT, "returns-choice", "hostile-input", False, lambda: (returns_choice(ref_chat),)),
    (CHAT, "inputs-is-model", "hostile-input", False, lambda: (returns_model_as_inputs(ref_chat),)),
    (CHAT, "raises-sometimes", "hostile-input", False, lambda: (raises_sometimes(ref_chat),)),
    (CHAT, "mutates-facts", "hostile-input", False, lambda: (mutates_facts(ref_chat),)),
    (CHAT, "clears-facts", "hostile-input", False, lambda: (clears_facts(ref_chat),)),
    (CHAT, "patches-choose", "security", False, lambda: (patches_model(ref_chat, "sticky", "cheapest"),)),
    (CHAT, "patches-module-constants", "security", False, lambda: (patches_defaults(ref_chat),)),
    (CHAT, "patches-check", "security", False, lambda: (patches_check(ref_chat),)),
    (CHAT, "flipping-dict", "hostile-input", False, lambda: (flipping(ref_chat),)),
    (CHAT, "huge-int-users", "hostile-input", False, lambda: (huge_int_users(ref_chat),)),
    (CHAT, "huge-budget-extra", "substance", False, lambda: (gamed_budget(ref_chat, latency_budget_ms=1e6),)),
    (CHAT, "free-servers-extra", "substance", False, lambda: (gamed_budget(ref_chat, price_server_hour=0.0),)),
    (CHAT, "missing-inputs", "substance", False,
     lambda: (pick_from_right_model_report_wrong_inputs(
         ref_chat, lambda i, f: {k: v for k, v in i.items() if k != "client_uplink_mbps"}),)),
    (CHAT, "example-token-overhead", "visible-only", False,
     lambda: (consistent_wrong(ref_chat, lambda i, f: {**i, "token_bytes": i["session_bytes"] + 250}),)),
    (CHAT, "example-uplink", "visible-only", False,
     lambda: (consistent_wrong(ref_chat, lambda i, f: {**i, "client_uplink_mbps": 10.0}),)),
    (CHAT, "example-budget", "visible-only", False,
     lambda: (consistent_wrong(ref_chat, lambda i, f: {**i, "latency_budget_ms": 50.0}),)),
    (CHAT, "valid-reference", "valid", True, lambda: (ref_chat,)),
    (CHAT, "valid-replace", "valid", True, lambda: (valid_replace(chat_inputs),)),
    (CHAT, "valid-by-hand", "valid", True, lambda: (valid_by_hand(chat_inputs),)),
    (CHAT, "valid-all-inputs", "valid", True, lambda: (valid_all_inputs(chat_inputs),)),
    (CHAT, "valid-default-extras", "valid", True, lambda: (valid_defaults_spelled_out(chat_inputs),)),
    (CHAT, "valid-copies-facts", "valid", True, lambda: (valid_copies_facts(chat_inputs),)),

    # ---------------------------------------------------------------- 08.shopping_cart
    (CART, "example-frozen", "visible-only", False, lambda: (frozen_to(EXAMPLE_CART, ref_cart),)),
    (CART, "always-sticky-cheapest", "visible-only", False, lambda: (always(ref_cart, "sticky", "cheapest"),)),
    (CART, "always-tokens-cheapest", "visible-only", False, lambda: (always(ref_cart, "tokens", "cheapest"),)),
    (CART, "always-store-cheapest", "visible-only", False, lambda: (always(ref_cart, "store", "cheapest"),)),
    (CART, "example-shoppers", "visible-only", False, lambda: (consistent_wrong(ref_cart, cart_from_example),)),
    (CART, "full-cart-value", "substance", False, lambda: (consistent_wrong(ref_cart, cart_full_value),)),
    (CART, "abandon-rate-as-usd", "substance", False, lambda: (consistent_wrong(ref_cart, cart_abandon_only),)),
    (CART, "no-token-overhead", "substance", False, lambda: (consistent_wrong(ref_cart, cart_no_overhead),)),
    (CART, "items-not-bytes", "substance", False, lambda: (consistent_wrong(ref_cart, cart_items_only),)),
    (CART, "views-per-hour", "substance", False, lambda: (consistent_wrong(ref_cart, cart_hourly),)),
    (CART, "restarts-per-year", "substance", False, lambda: (consistent_wrong(ref_cart, cart_restarts_per_year),)),
    (CART, "right-pick-full-value-reported", "logic", False,
     lambda: (pick_from_right_model_report_wrong_inputs(ref_cart, cart_full_value),)),
    (CART, "right-inputs-pick-from-full-value", "logic", False,
     lambda: (report_right_inputs_pick_from_wrong(ref_cart, cart_full_value),)),
    (CART, "reason-always-latency", "logic", False, lambda: (right_inputs_fixed_reason(ref_cart, "latency"),)),
    (CART, "reason-always-cheapest", "logic", False, lambda: (right_inputs_fixed_reason(ref_cart, "cheapest"),)),
    (CART, "random-pick", "logic", False, lambda: (random_pick(ref_cart),)),
    (CART, "lying-str-design", "hostile-input", False, lambda: (lying_design(ref_cart),)),
    (CART, "nan-inputs", "hostile-input", False, lambda: (nan_inputs(ref_cart),)),
    (CART, "string-inputs", "hostile-input", False, lambda: (string_inputs(ref_cart),)),
    (CART, "huge-users", "hostile-input", False, lambda: (huge_users(ref_cart),)),
    (CART, "negative-users", "hostile-input", False, lambda: (negative_users(ref_cart),)),
    (CART, "zero-users", "hostile-input", False, lambda: (with_field(ref_cart, "users", 0),)),
    (CART, "design-capitalised", "hostile-input", False, lambda: (top(ref_cart, "design", "Sticky"),)),
    (CART, "mutates-facts", "hostile-input", False, lambda: (mutates_facts(ref_cart),)),
    (CART, "patches-choose", "security", False, lambda: (patches_model(ref_cart, "tokens", "cheapest"),)),
    (CART, "patches-check", "security", False, lambda: (patches_check(ref_cart),)),
    (CART, "flipping-dict", "hostile-input", False, lambda: (flipping(ref_cart),)),
    (CART, "tiny-budget-extra", "substance", False, lambda: (gamed_budget(ref_cart, latency_budget_ms=0.0),)),
    (CART, "replicated-extra", "substance", False, lambda: (gamed_budget(ref_cart, replication=2),)),
    (CART, "example-abandon-rate", "visible-only", False,
     lambda: (consistent_wrong(ref_cart, lambda i, f: {**i, "relogin_cost_usd": f["cart_value_usd"] * 0.1}),)),
    (CART, "valid-sets-budget-default", "valid", True,
     lambda: (lambda f: _pick({**cart_inputs(f), "latency_budget_ms": 50.0, "client_uplink_mbps": 10}),)),
    (CART, "valid-reference", "valid", True, lambda: (ref_cart,)),
    (CART, "valid-replace", "valid", True, lambda: (valid_replace(cart_inputs),)),
    (CART, "valid-by-hand", "valid", True, lambda: (valid_by_hand(cart_inputs),)),
    (CART, "valid-all-inputs", "valid", True, lambda: (valid_all_inputs(cart_inputs),)),
    (CART, "valid-default-extras", "valid", True, lambda: (valid_defaults_spelled_out(cart_inputs),)),

    # ---------------------------------------------------------------- 08.public_api
    (API, "example-frozen", "visible-only", False, lambda: (frozen_to(EXAMPLE_API, ref_api),)),
    (API, "always-serverless", "visible-only", False, lambda: (always(ref_api, "serverless", "cheapest"),)),
    (API, "always-tokens", "visible-only", False, lambda: (always(ref_api, "tokens", "cheapest"),)),
    (API, "example-break-even", "visible-only", False, lambda: (api_be(_be_example),)),
    (API, "example-clients", "visible-only", False, lambda: (consistent_wrong(ref_api, api_from_example),)),
    (API, "defaults-left", "substance", False, lambda: (consistent_wrong(ref_api, api_defaults_left),)),
    (API, "session-default", "substance", False, lambda: (consistent_wrong(ref_api, api_session_default),)),
    (API, "service-in-seconds", "substance", False, lambda: (consistent_wrong(ref_api, api_seconds),)),
    (API, "rate-per-second", "substance", False, lambda: (consistent_wrong(ref_api, api_per_second),)),
    # Reclassified after phase 1: verify_ms/lookup_ms/token_bytes/cookie_bytes left at
    # their defaults move the break-even by 0.04%, less than rounding it to a whole
    # client; the reported inputs are right, so the answer is right within rounding.
    (API, "valid-break-even-defaults-left", "valid", True, lambda: (api_be(_be_defaults_left),)),
    (API, "break-even-store-pair", "substance", False, lambda: (api_be(_be_wrong_pair),)),
    (API, "break-even-in-rps", "substance", False, lambda: (api_be(_be_requests_per_second),)),
    (API, "break-even-varies-rate", "substance", False, lambda: (api_be(_be_vary_rate),)),
    (API, "break-even-narrow-range", "substance", False, lambda: (api_be(_be_narrow_range),)),
    (API, "break-even-chapter-model", "substance", False, lambda: (api_be(_be_chapter_model),)),
    (API, "break-even-off-by-1000", "substance", False, lambda: (api_be(_be_rounded_far),)),
    (API, "break-even-list", "hostile-input", False, lambda: (api_be(_be_points),)),
    (API, "break-even-nan", "hostile-input", False, lambda: (api_be(_be_nan),)),
    (API, "break-even-inf", "hostile-input", False, lambda: (api_be(_be_inf),)),
    (API, "break-even-negative", "hostile-input", False, lambda: (api_be(_be_negative),)),
    (API, "break-even-string", "hostile-input", False, lambda: (api_be(_be_string),)),
    (API, "break-even-bool", "hostile-input", False, lambda: (api_be(_be_bool),)),
    (API, "break-even-any-number", "hostile-input", False, lambda: (api_be(_be_any),)),
    (API, "break-even-missing", "hostile-input", False,
     lambda: (lambda f: {k: v for k, v in ref_api(f).items() if k != "break_even_clients"},)),
    (API, "reason-always-latency", "logic", False, lambda: (right_inputs_fixed_reason(ref_api, "latency"),)),
    (API, "lying-str-design", "hostile-input", False, lambda: (lying_design(ref_api),)),
    (API, "nan-inputs", "hostile-input", False, lambda: (nan_inputs(ref_api),)),
    (API, "mutates-facts", "hostile-input", False, lambda: (mutates_facts(ref_api),)),
    (API, "patches-choose", "security", False, lambda: (patches_model(ref_api, "sticky", "cheapest"),)),
    (API, "patches-check", "security", False, lambda: (patches_check(ref_api),)),
    (API, "flipping-dict", "hostile-input", False, lambda: (flipping(ref_api),)),
    (API, "cookie-extra", "substance", False, lambda: (with_field(ref_api, "cookie_bytes", 60),)),
    (API, "free-functions-extra", "substance", False,
     lambda: (gamed_budget(ref_api, price_function_gb_second=0.0, price_function_million_requests=0.0),)),
    (API, "valid-reference", "valid", True, lambda: (ref_api,)),
    (API, "valid-int-break-even", "valid", True, lambda: (api_be(_be_int),)),
    (API, "valid-bisect-by-hand", "valid", True, lambda: (api_be(_be_analytic),)),
    (API, "valid-sticky-pair", "valid", True, lambda: (api_be(_be_sticky_pair),)),
    (API, "valid-wide-range", "valid", True, lambda: (api_be(_be_wide),)),
    (API, "valid-all-inputs", "valid", True,
     lambda: (lambda f: {**valid_all_inputs(api_inputs)(f),
                         "break_even_clients": api_break_even(api_inputs(f))},)),
]
