#!/usr/bin/env python3
"""Add up the pytest summary lines of a tox log and print one closing line.

Usage: tools/summarize_pytest.py LOG

tox runs pytest twice per environment (our suite, then optree 0.20.0's own through
tools/upstream_suite.py) and closes with its own report, so the pytest summaries
("==== 120 passed, 2 skipped in 3.1s ====") sit in the middle of the log. This prints each one
with its environment (``py311``, ``py311 upstream``), then a plain total line::

    tests: 240 passed, 0 failed, 4 skipped
    upstream suite: 93900 passed, 0 failed, 12 xfailed, 40 skipped

The ids of failed tests (pytest's ``FAILED``/``ERROR`` short-summary lines) are printed under
their environment's summary, so the tail of a CI log names what failed.
"""

from __future__ import annotations

import re
import sys
from collections import Counter

_ENV = re.compile(r'^(py3\d+t?): commands\[\d+\]>(.*)')
_EXIT = re.compile(r'(py3\d+t?): exit (-?\d+) \(')
_SUMMARY = re.compile(
    r'=+ (.*\b(?:passed|failed|error|errors|skipped|no tests ran)\b.*) in [\d.]+s'
)
_FAILED = re.compile(r'^(?:FAILED|ERROR) \S+')
_FAILED_SHOWN = 200  # characters of a short-summary line: the id and the start of the message
_COUNT = re.compile(r'(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected)')


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    env: str | None = None
    summarized = False
    totals: dict[str, Counter[str]] = {'tests': Counter(), 'upstream suite': Counter()}
    seen = 0
    failures: list[str] = []

    def counter() -> Counter[str]:
        assert env is not None
        return totals['upstream suite' if env.endswith(' upstream') else 'tests']

    def close_env(exit_line: str = '') -> None:
        # An env whose pytest died (a crash, a signal) leaves no summary: count it as a failure.
        nonlocal env, seen
        if env is not None and failures:
            for failure in failures:
                print(f'  {failure[:_FAILED_SHOWN]}')
            failures.clear()
        if env is not None and not summarized:
            seen += 1
            counter()['failed'] += 1
            detail = f' ({exit_line})' if exit_line else ''
            print(f'{env}: pytest ended without a summary{detail}; counted as 1 failed')
        env = None

    with open(argv[0], errors='replace') as fh:
        for raw in fh:
            line = raw.strip()
            match = _ENV.match(line)
            if match:
                close_env()
                env, summarized = match.group(1), False
                if 'upstream_suite' in match.group(2):
                    env += ' upstream'
                continue
            match = _EXIT.search(line)
            if match and env is not None and env.split()[0] == match.group(1):
                close_env(f'exit code {match.group(2)}')
                continue
            if env is not None and _FAILED.match(line):
                failures.append(line)
                continue
            match = _SUMMARY.search(line)
            if not match or env is None:
                continue
            seen += 1
            summarized = True
            print(f'{env}: {match.group(1)}')
            for number, kind in _COUNT.findall(match.group(1)):
                counter()['error' if kind.startswith('error') else kind] += int(number)
    close_env()
    if not seen:
        print('tests: no pytest summary found in the log')
        return 0
    for name, counts in totals.items():
        if not counts:
            continue
        line = f'{name}: {counts["passed"]} passed, {counts["failed"] + counts["error"]} failed'
        for kind in ('xfailed', 'xpassed', 'skipped'):
            if counts[kind]:
                line += f', {counts[kind]} {kind}'
        print(line)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
