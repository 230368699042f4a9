"""The test suite's helpers (no tests here): the differential harness against optree 0.20.0,
the tree zoo, the scenarios that concurrency tests run in child processes and subinterpreters,
and support for optional libraries. See tests/README.md.

Test files import these as ``harness.<module>`` (conftest.py puts ``tests/`` on ``sys.path``);
child processes and subinterpreters inherit that ``sys.path`` and import them the same way.
Keep this package importable with the standard library and optree only: subinterpreters import
it.
"""
