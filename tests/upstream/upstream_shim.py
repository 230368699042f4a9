"""pytest plugin for running optree 0.20.0's own test suite against this package.

Loaded by ``tools/upstream_suite.py`` (``-p upstream_shim``); not part of our own suite.

* It imports ``pybind11_flags``, which supplies the two pybind11 build flags the suite
  imports from ``optree._C`` (see there).
* ``--upstream-shard=I/N`` keeps every N-th collected test, from the I-th (the runner starts N
  processes, each with one shard).
* Tests listed in ``expected_failures.txt`` (path in ``OPTREE_UPSTREAM_EXPECTED_FAILURES``)
  are marked ``xfail(strict=True)``: a listed test that starts to pass fails the run. An entry
  that names a test the suite does not have is an error too (checked on whole-suite runs).
"""

from __future__ import annotations

import os
from pathlib import Path

import pybind11_flags  # noqa: F401 (supplies the flags on import)
import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        '--upstream-shard',
        default=None,
        help='I/N: run only the tests whose index in the collection is I modulo N',
    )


def read_expected_failures(path: Path) -> dict[str, str]:
    """``{test id: reason}``; a line is ``<test id>  # <reason>``, ids relative to tests/."""
    entries: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith('#'):
            continue
        test_id, sep, reason = line.partition('  # ')
        if not sep or not reason.strip():
            raise pytest.UsageError(f'{path}:{number}: expected "<test id>  # <reason>"')
        entries[test_id.strip()] = reason.strip()
    return entries


def _relative_id(nodeid: str) -> str:
    return nodeid.removeprefix('tests/')


@pytest.hookimpl(tryfirst=True)
def pytest_collectreport(report: pytest.CollectReport) -> None:
    # A module skipped at collection (say, a test file for Python 3.14+ only) is reported by
    # every shard: only the first one counts it, so the shards' counts add up.
    shard = _CONFIG.getoption('upstream_shard') if _CONFIG is not None else None
    if shard and report.skipped and not shard.startswith('0/'):
        report.outcome = 'passed'
        report.result = []


_CONFIG: pytest.Config | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _CONFIG
    _CONFIG = config


# Last, so that the shards split what -k and --deselect left.
@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mark_expected_failures(config, items)
    shard = config.getoption('upstream_shard')
    if shard:
        index, count = (int(part) for part in shard.split('/'))
        kept = [item for position, item in enumerate(items) if position % count == index]
        dropped = [item for position, item in enumerate(items) if position % count != index]
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def mark_expected_failures(config: pytest.Config, items: list[pytest.Item]) -> None:
    listing = os.environ.get('OPTREE_UPSTREAM_EXPECTED_FAILURES')
    if not listing:
        return
    expected = read_expected_failures(Path(listing))
    matched: set[str] = set()
    collected_files: set[str] = set()
    for item in items:
        test_id = _relative_id(item.nodeid)
        collected_files.add(test_id.partition('::')[0])
        # An entry names one parametrized case, or a test function with all its cases.
        for key in (test_id, test_id.partition('[')[0]):
            if key in expected:
                matched.add(key)
                item.add_marker(pytest.mark.xfail(reason=expected[key], strict=True))
                break
    stale = [
        test_id
        for test_id in expected
        if test_id not in matched and test_id.partition('::')[0] in collected_files
    ]
    # Only a run of the whole suite can tell: a selection leaves listed tests uncollected.
    if stale and os.environ.get('OPTREE_UPSTREAM_WHOLE_SUITE') == '1':
        raise pytest.UsageError(
            'expected_failures.txt names tests the suite does not have: ' + ', '.join(stale)
        )
