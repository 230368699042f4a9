"""Run the plain expected-value tests (tests/plain) under the reference interpreter, so that
their hand-written values are checked against optree 0.20.0 itself.

Usage (``test_harness.py`` runs it)::

    REFERENCE_PYTHON -I harness/plain_on_reference.py SITE_PACKAGES [PYTEST_ARGS...]

SITE_PACKAGES holds pytest (the reference venv has none); it goes to the *end* of ``sys.path``,
so that ``optree`` still resolves to the reference's. tests/conftest.py is not loaded (it needs
hypothesis and the harness); the one fixture the plain tests use, ``namespace``, is given here.
"""

from __future__ import annotations

import itertools
import os
import sys


def main() -> int:
    sys.path.append(sys.argv[1])
    import pytest

    import optree

    if optree.__version__ != '0.20.0':
        print(f'not the reference: optree {optree.__version__} at {optree.__file__}')
        return 2

    class Fixtures:
        counter = itertools.count()

        @pytest.fixture
        def namespace(self, request: pytest.FixtureRequest) -> str:
            return f'tests-{os.getpid()}-{next(self.counter)}-{request.node.name[:40]}'

    args = ['-q', '-p', 'no:cacheprovider', '--noconftest', *sys.argv[2:]]
    return int(pytest.main(args, plugins=[Fixtures()]))


if __name__ == '__main__':
    sys.exit(main())
