"""pytest plugin for running optree 0.20.0's own test suite against this package.

Loaded by ``tools/upstream_suite.py`` (``-p upstream_shim``); not part of our own suite.

* optree 0.20.0 is a pybind11 extension, and its suite imports two pybind11 build flags from
  ``optree._C``. Our ``optree._C`` is built with Cython and does not define them; their
  meaning holds for it (``PyTreeKind`` is a native ``enum.IntEnum``, and the module supports
  subinterpreters), so they are supplied here, in the runner, and never added to our module.
* Tests listed in ``expected_failures.txt`` (path in ``OPTREE_UPSTREAM_EXPECTED_FAILURES``)
  are marked ``xfail(strict=True)``: a listed test that starts to pass fails the run. An entry
  that names a test the suite does not have is an error too (checked on whole-suite runs).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import optree._C

_PYBIND11_FLAGS = {
    'PYBIND11_HAS_NATIVE_ENUM': True,
    'PYBIND11_HAS_SUBINTERPRETER_SUPPORT': True,
}
for _name, _value in _PYBIND11_FLAGS.items():
    if not hasattr(optree._C, _name):
        setattr(optree._C, _name, _value)


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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
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
