"""Helpers of ``test_parallel.py`` that workers must import by name: functions mapped in worker
interpreters and processes, custom node types, and the zoo written out as importable modules.

Only the standard library and optree are imported here, so that subinterpreters and child
processes (whose ``sys.path`` includes this directory) can import it.
"""

from __future__ import annotations

import importlib
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import optree
import optree._C as _C

# ------------------------------------------------------------------- functions to map


def tag(x: Any, *rest: Any) -> Any:
    """Marks each leaf: the result differs from the leaf, for any leaf."""
    return ('mapped', x, *rest)


def negate(x: Any) -> Any:
    return -x


def add(x: Any, *ys: Any) -> Any:
    return x + sum(ys)


def where(x: Any) -> Any:
    """The leaf and the interpreter and thread that mapped it."""
    return (x, _C.get_current_interpreter_id(), threading.get_ident())


def where_slowly(x: Any) -> Any:
    """where(x), after a millisecond: chunks take long enough for pool workers to join in."""
    time.sleep(0.001)
    return where(x)


class LeafError(ValueError):
    """Raised by :func:`fail_on_negative`, with the failing leaf in its args."""


def fail_on_negative(x: Any) -> Any:
    if x < 0:
        raise LeafError(f'negative leaf {x}', x)
    return x * 10


def fail_on_negative_late(x: Any) -> Any:
    """Like fail_on_negative, but leaves below 100 are slow: later chunks fail first."""
    if 0 <= x < 100:
        time.sleep(0.002)
    return fail_on_negative(x)


class Unpicklable(Exception):
    """An exception that pickle cannot rebuild (its __init__ takes two arguments)."""

    def __init__(self, a: Any, b: Any) -> None:
        super().__init__(f'{a}/{b}')


def fail_unpicklably(x: Any) -> Any:
    if x < 0:
        raise Unpicklable(x, 'no')
    return x


def stop_at_three(x: Any) -> Any:
    """Raises StopIteration at the leaf 3: the serial map's unflatten skips its result."""
    if x == 3:
        raise StopIteration
    return x


def make_callable(x: Any) -> Any:
    """Returns what cannot travel back from a worker: a lambda."""
    return lambda: x


def nested_map(x: Any) -> Any:
    """Calls optree.parallel.tree_map from inside a worker."""
    import optree.parallel

    return optree.parallel.tree_map(negate, [x, x + 1])


# ------------------------------------------------------------------- custom node types


class Node2:
    """A custom node type registered (in namespace 'support') when this module is imported."""

    def __init__(self, left: Any, right: Any, label: Any = None) -> None:
        self.left = left
        self.right = right
        self.label = label

    def __eq__(self, other: object) -> bool:
        return type(other) is Node2 and (self.left, self.right, self.label) == (
            other.left,
            other.right,
            other.label,
        )

    def __repr__(self) -> str:
        return f'Node2({self.left!r}, {self.right!r}, label={self.label!r})'


optree.register_pytree_node(
    Node2,
    lambda node: ((node.left, node.right), node.label, ('left', 'right')),
    lambda label, children: Node2(*children, label=label),
    namespace='support',
)


class Unregistered:
    """A custom node type that only the tests register (never at import)."""

    def __init__(self, *items: Any) -> None:
        self.items = items

    def __eq__(self, other: object) -> bool:
        return type(other) is Unregistered and self.items == other.items

    def __repr__(self) -> str:
        return f'Unregistered{self.items!r}'


def register_unregistered(namespace: str = 'support') -> None:
    optree.register_pytree_node(
        Unregistered,
        lambda node: (node.items, None),
        lambda _, children: Unregistered(*children),
        namespace=namespace,
    )


class HalfBuiltSpy:
    """A leaf, key or metadata item whose unpickling looks for lists and tuples of ``size``
    items that still have empty slots (reachable through ``gc``, as any Python code run during
    unpack could find them): unpack must make its containers only once their items exist."""

    seen: ClassVar[list[str]] = []

    def __init__(self, size: int) -> None:
        self.size = size

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_half_built_spy, (self.size,))

    def __eq__(self, other: object) -> bool:
        return type(other) is HalfBuiltSpy and other.size == self.size

    def __hash__(self) -> int:
        return hash(('HalfBuiltSpy', self.size))


def _rebuild_half_built_spy(size: int) -> HalfBuiltSpy:
    import gc

    for obj in gc.get_objects():
        # An empty slot is skipped by gc's traversal: fewer referents than items.
        if type(obj) in (list, tuple) and len(obj) == size and len(gc.get_referents(obj)) < size:
            HalfBuiltSpy.seen.append(type(obj).__name__)
    return HalfBuiltSpy(size)


# ------------------------------------------------------------------- the zoo as modules

PRELUDE_MODULE = 'optree_zoo_prelude'


def zoo_module_name(entry_id: str) -> str:
    return 'optree_zoo_' + re.sub(r'\W', '_', entry_id)


def write_zoo_modules(directory: Path) -> None:
    """Writes the harness prelude and each zoo entry's setup as modules importable by name, so
    that worker interpreters and processes find the zoo's classes (and register its custom
    nodes) when they import them."""
    from harness import reference
    from harness.zoo import ZOO

    directory.mkdir(parents=True, exist_ok=True)
    (directory / f'{PRELUDE_MODULE}.py').write_text(reference.PRELUDE)
    for entry in ZOO:
        body = f'from {PRELUDE_MODULE} import *  # noqa: F403\n{entry.setup}\n'
        (directory / f'{zoo_module_name(entry.id)}.py').write_text(body)


def zoo_tree(entry_id: str, variant: str) -> tuple[Any, dict[str, Any]]:
    """The tree of a zoo entry and the keyword arguments of a variant, built in its module."""
    from harness.zoo import VARIANTS, ZOO_BY_ID

    module = importlib.import_module(zoo_module_name(entry_id))
    namespace = module.__dict__
    tree = eval(ZOO_BY_ID[entry_id].expr, namespace)
    kwargs = eval(f'dict({VARIANTS[variant]})', namespace)
    return tree, kwargs


def in_subinterpreter() -> bool:
    return not _C.is_current_interpreter_main()


def python_version() -> tuple[int, ...]:
    return tuple(sys.version_info[:2])
