"""Subinterpreters (own GIL; CPython 3.12, 3.13, 3.14, 3.14t): reference cycles through
treespecs (with their registered types, dict keys, metadata, entries) and leaf iterators are
collected inside the interpreter, and at its finalization, while other interpreters do the same.

Each scenario (``harness/gc_scenarios.py``) runs in a child process under a timeout, so a crash
or a deadlock fails one test, not the session.
"""

from __future__ import annotations

import pytest

from harness import subinterpreters
from harness.subinterpreters import assert_passed, run_scenario, show_figures

pytestmark = pytest.mark.skipif(subinterpreters.FLAVOUR is None, reason=subinterpreters.SKIP_REASON)

SCENARIO_TIMEOUT = 300


def test_cycles_are_collected_inside_subinterpreters(capsys):
    result = run_scenario(
        'harness.gc_scenarios',
        'scenario_garbage_collected_in_subinterpreters',
        timeout=SCENARIO_TIMEOUT,
        count=4,
        rounds=5,
    )
    assert_passed(result)
    show_figures(
        capsys, 'cycles collected in subinterpreters', result.figures, via=subinterpreters.FLAVOUR
    )


def test_cycles_are_collected_at_subinterpreter_finalization(capsys):
    result = run_scenario(
        'harness.gc_scenarios',
        'scenario_garbage_collected_at_finalization',
        timeout=SCENARIO_TIMEOUT,
        count=4,
    )
    assert_passed(result)
    show_figures(
        capsys, 'cycles collected at finalization', result.figures, via=subinterpreters.FLAVOUR
    )
