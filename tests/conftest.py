"""Shared fixtures: the reference server and the differential checker."""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

_TESTS_DIR = Path(__file__).resolve().parent
_REPO_ROOT = _TESTS_DIR.parent


def _prefer_built_optree() -> None:
    """With ``python -m pytest`` from the repo root, the source tree's ``optree/`` (which has no
    compiled ``_C`` unless built in place) would shadow the installed package: drop the root."""
    if 'optree' in sys.modules:
        return
    source = _REPO_ROOT / 'optree'
    if any(source.glob('_C.*.so')) or any(source.glob('_C.*.pyd')):
        return
    sys.path[:] = [p for p in sys.path if Path(p or os.getcwd()).resolve() != _REPO_ROOT]


_prefer_built_optree()
sys.path.insert(0, str(_TESTS_DIR))

import reference  # noqa: E402  (needs the sys.path set-up above)

settings.register_profile(
    'optree-tests',
    max_examples=60,
    deadline=None,
    database=None,
    derandomize=os.environ.get('CI', '').strip().lower() in {'1', 'true', 'yes'},
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'optree-tests'))

_REFERENCE_LOOKUP: tuple[str | None, str] | None = None


def _reference_lookup() -> tuple[str | None, str]:
    global _REFERENCE_LOOKUP
    if _REFERENCE_LOOKUP is None:
        _REFERENCE_LOOKUP = reference.find_reference_python()
    return _REFERENCE_LOOKUP


def in_ci() -> bool:
    return os.environ.get('CI', '').strip().lower() in {'1', 'true', 'yes'}


def pytest_report_header(config: pytest.Config) -> list[str]:
    python, description = _reference_lookup()
    lines = [f'optree reference: {description if python else "MISSING: " + description}']
    try:
        import optree

        lines.append(f'optree under test: {getattr(optree, "__file__", "?")}')
    except Exception as ex:
        lines.append(f'optree under test: import failed: {ex!r}')
    return lines


@pytest.fixture(scope='session')
def reference_server() -> Iterable[reference.ReferenceServer]:
    python, description = _reference_lookup()
    if python is None:
        if in_ci():
            pytest.fail(f'reference optree is required under CI=true: {description}', pytrace=False)
        pytest.skip(f'no reference optree {reference.REFERENCE_VERSION}: {description}')
    server = reference.ReferenceServer(python)
    try:
        yield server
    finally:
        server.close()


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


@pytest.fixture(scope='session')
def differential(reference_server: reference.ReferenceServer) -> Differential:
    return Differential(reference_server)


_COUNTER = itertools.count()


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    """A registry namespace nobody else uses."""
    return f'tests-{os.getpid()}-{next(_COUNTER)}-{request.node.name[:40]}'
