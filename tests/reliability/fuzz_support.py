"""Running a Hypothesis property with a chosen example budget, and counting the cases.

Each fuzz test runs its property twice over: a default budget that keeps `make test`
fast, and a much larger one under `@pytest.mark.slow` (`make test-slow`). `BUDGETS`
gives the pytest parameters for both. `run_property` applies the budget, runs the
property, asserts that it really ran (a filter that rejects everything, or a strategy
that collapsed, must fail the test rather than pass it vacuously) and returns how many
cases ran. With DOHOST_FUZZ_REPORT=<file> set, one line `<test id> <cases>` per property
is appended there (the counts quoted in the issue's closing note).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPORT_ENV = "DOHOST_FUZZ_REPORT"


def budgets(fast: int, slow: int) -> Any:
    """`@budgets(200, 5000)` parametrizes a test's `examples` argument: the fast budget
    runs by default, the slow one only with `-m slow`."""
    return pytest.mark.parametrize(
        "examples",
        [pytest.param(fast, id="fast"), pytest.param(slow, id="slow", marks=pytest.mark.slow)],
    )


def run_property(
    prop: Callable[..., None],
    examples: int,
    *strategies: st.SearchStrategy[Any],
    min_fraction: float = 0.5,
) -> int:
    """Run `prop` on `examples` generated cases; return how many it was called with."""
    calls = 0

    def counted(args: tuple[Any, ...]) -> None:
        nonlocal calls
        calls += 1
        prop(*args)

    # Hypothesis keys its example database (the replay of failures) by the test
    # function's source, which is this wrapper's for every property: add the pytest id.
    test_id = os.environ.get("PYTEST_CURRENT_TEST", prop.__qualname__).split(" ")[0]
    counted.__name__ = counted.__qualname__ = prop.__name__
    counted.__module__ = prop.__module__
    counted._hypothesis_internal_add_digest = test_id.encode()  # type: ignore[attr-defined]
    test = settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )(given(st.tuples(*strategies))(counted))
    test()
    assert calls >= examples * min_fraction, (
        f"{prop.__name__} ran only {calls} cases of {examples}: a strategy or filter collapsed"
    )
    report = os.environ.get(REPORT_ENV)
    if report:
        with open(report, "a") as f:
            f.write(f"{test_id} {calls}\n")
    return calls
