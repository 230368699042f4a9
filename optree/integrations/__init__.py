"""Integrations with third-party libraries, each imported on first access.

``optree.integrations.numpy`` needs NumPy, ``.jax`` JAX, ``.torch`` PyTorch and ``.attrs`` attrs;
none of them is imported by ``import optree``.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from optree.integrations import attrs, jax, numpy, torch  # noqa: F401 (for type checkers)

SUBMODULES: frozenset[str] = frozenset({'attrs', 'jax', 'numpy', 'torch'})


def __dir__() -> list[str]:
    return [*sorted(SUBMODULES), 'SUBMODULES']


def __getattr__(name: str, /) -> ModuleType:
    if name not in SUBMODULES:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    submodule = importlib.import_module(f'{__name__}.{name}')
    # Cache it on the package, so later lookups skip this hook.
    setattr(sys.modules[__name__], name, submodule)
    return submodule


del TYPE_CHECKING
