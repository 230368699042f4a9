"""Shared fixtures: the reference server, the differential checker, a fresh namespace; the
hypothesis profile. The helpers themselves live in the ``harness`` package."""

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
sys.path.insert(0, str(_TESTS_DIR))  # the harness package, here and in child processes

from harness import reference  # noqa: E402  (needs the sys.path set-up above)
from harness.differential import Differential  # noqa: E402
from harness.environment import in_ci  # noqa: E402

settings.register_profile(
    'optree-tests',
    max_examples=60,
    deadline=None,
    database=None,
    derandomize=in_ci(),
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'optree-tests'))

_REFERENCE_LOOKUP: tuple[str | None, str] | None = None


def _reference_lookup() -> tuple[str | None, str]:
    global _REFERENCE_LOOKUP
    if _REFERENCE_LOOKUP is None:
        _REFERENCE_LOOKUP = reference.find_reference_python()
    return _REFERENCE_LOOKUP


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


@pytest.fixture(scope='session')
def differential(reference_server: reference.ReferenceServer) -> Differential:
    return Differential(reference_server)


_COUNTER = itertools.count()


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    """A registry namespace nobody else uses."""
    return f'tests-{os.getpid()}-{next(_COUNTER)}-{request.node.name[:40]}'
