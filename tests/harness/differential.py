"""The differential checker: evaluate snippets with our optree (in-process, or in a child process
where a crash is possible) and with optree 0.20.0 (the reference server), and compare."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from harness import reference


class Differential:
    """Evaluate snippets with our optree (in-process) and the reference; compare outcomes."""

    def __init__(self, server: reference.ReferenceServer) -> None:
        self.server = server

    def outcomes(self, setup: str, expr: str) -> tuple[dict, dict]:
        theirs = self.server.evaluate(setup, expr)
        ours = reference.evaluate(setup, expr)
        return ours, theirs

    def check(
        self,
        setup: str,
        exprs: Iterable[str] | str,
        *,
        check_message: bool = False,
        setup_must_succeed: bool = True,
        isolated: bool = False,
    ) -> list[tuple[dict, dict]]:
        """Compare every expression; fail listing all mismatches at once.

        With ``isolated`` our side runs in a child process, so that a crash fails the test
        instead of killing the session.

        With ``setup_must_succeed`` (the default) a setup that fails on the reference is a bug in
        the test itself, reported as such rather than compared.
        """
        if isinstance(exprs, str):
            exprs = [exprs]
        exprs = list(exprs)
        cases = [(setup, expr) for expr in exprs]
        pending = self.server.submit(cases)
        if isolated:
            ours = run_ours_isolated(cases)
        else:
            ours = [reference.evaluate(setup, expr) for expr in exprs]  # overlaps with the server
        theirs = self.server.collect(pending)
        if setup_must_succeed:
            broken = [t for t in theirs if not t['ok'] and t['stage'] == 'setup']
            assert not broken, f'test setup fails on the reference itself: {broken[0]}'
        problems = []
        for expr, o, t in zip(exprs, ours, theirs, strict=True):
            diff = reference.compare_outcomes(o, t, check_message=check_message)
            if diff is not None:
                problems.append(f'* {expr}\n  {diff}')
        if problems:
            pytest.fail(
                f'{len(problems)} of {len(exprs)} expressions disagree with optree '
                f'{reference.REFERENCE_VERSION}:\n' + '\n'.join(problems),
                pytrace=False,
            )
        return list(zip(ours, theirs, strict=True))

    def check_raises(
        self,
        setup: str,
        expr: str,
        expected: type[BaseException] | tuple[type[BaseException], ...],
        *,
        check_message: bool = False,
    ) -> dict:
        """Both sides must raise; the exception types must agree and be ``expected``."""
        ours, theirs = self.check(setup, [expr], check_message=check_message)[0]
        names = {e.__name__ for e in (expected if isinstance(expected, tuple) else (expected,))}
        assert not theirs['ok'], f'the reference did not raise for {expr!r}: {theirs}'
        assert theirs['exc_type'] in names, f'the reference raised {theirs}, expected {names}'
        assert not ours['ok']
        assert ours['message'].strip(), f'our {ours["exc_type"]} has an empty message'
        return ours


def run_ours_isolated(cases: list[tuple[str, str]]) -> list[dict]:
    """Evaluate snippets with our optree in a child process; a crash fails the test."""
    try:
        return reference.evaluate_isolated(cases)
    except reference.ChildCrashed as ex:
        failure = str(ex)
    pytest.fail(f'our optree crashed: {failure}', pytrace=False)


def assert_all_raise(differential, setup, exprs, expected, *, isolated=True, check_message=False):
    """Every expression raises ``expected`` on both sides (types compared), with a message."""
    pairs = differential.check(setup, exprs, isolated=isolated, check_message=check_message)
    names = {cls.__name__ for cls in (expected if isinstance(expected, tuple) else (expected,))}
    for expr, (ours, theirs) in zip(exprs, pairs, strict=True):
        assert not theirs['ok'] and theirs['exc_type'] in names, f'reference: {expr}: {theirs}'
        assert not ours['ok'] and ours['exc_type'] in names, f'ours: {expr}: {ours}'
        assert ours['message'].strip(), f'{expr}: our {ours["exc_type"]} has an empty message'
    return pairs
