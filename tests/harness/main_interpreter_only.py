"""A module that cannot be imported in a subinterpreter, as numpy and other extension modules
without subinterpreter support (or any module importing one): for ``test_parallel.py``."""

from __future__ import annotations

import time
from typing import Any

import optree._C

if not optree._C.is_current_interpreter_main():
    raise ImportError('main_interpreter_only cannot be imported in a subinterpreter')


def slow_negate(x: Any) -> Any:
    """-x, after a millisecond: chunks take long enough for pool workers to join in."""
    time.sleep(0.001)
    return -x
