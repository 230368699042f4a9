"""The work and the trees of ``scaling.py``'s optree.parallel benchmarks (standard library and
optree only). A module of its own, so that worker subinterpreters import these functions by name:
``optree.parallel.tree_map`` picks its interpreter pool only for such functions.
"""

from __future__ import annotations

import collections
from typing import Any, NamedTuple

# Iterations of spin()'s loop: about 50 us of pure Python per call on the development machine
# (scaling.py measures and reports the actual time).
SPIN_ITERATIONS = 1500


def spin(x: Any) -> Any:
    """CPU-bound work: a pure-Python loop of about 50 us, holding the GIL throughout."""
    acc = 0.0
    for i in range(SPIN_ITERATIONS):
        acc += (i % 7) * 0.5
    return x + acc * 0.0


def bump(x: Any) -> Any:
    """Trivial work."""
    return x + 1


class Param(NamedTuple):
    weight: list[float]
    bias: list[float]


def cpu_tree(leaves: int = 200) -> dict[str, list[float]]:
    """Leaves for spin(): a dict of lists of floats."""
    return {f'layer{i:02d}': [float(i + j) for j in range(10)] for i in range(leaves // 10)}


def wide_tree() -> list[dict[str, Any]]:
    """10,000 leaves for bump(): 1,000 records of a list of 8 floats, a float and an int."""
    return [{'w': [float(i + j) for j in range(8)], 'b': float(i), 'n': i} for i in range(1000)]


def float_dict(tag: str = '') -> dict[str, tuple[float, float]]:
    """A dict of 500 pairs of floats: 1,000 floats (the measurement of the issue)."""
    return {f'k{i:03d}{tag}': (float(i), float(-i)) for i in range(500)}


def model_tree(tag: str = '') -> collections.OrderedDict[str, Param]:
    """Model-parameter-like, 409 nodes: an OrderedDict of 24 namedtuples of lists of floats."""
    return collections.OrderedDict(
        (f'layer{i:03d}{tag}', Param([float(i + j) for j in range(12)], [0.5, -0.5]))
        for i in range(24)
    )


def string_tree(tag: str = '') -> dict[str, list[str]]:
    """1,000 short strings: a dict of 500 pairs."""
    return {f'k{i:03d}{tag}': [f's{i}', f't{i}'] for i in range(500)}


QUEUE_TREES = {
    'dict of 1,000 floats': float_dict,
    'model-like tree, 409 nodes': model_tree,
    '1,000 short strings': string_tree,
}
