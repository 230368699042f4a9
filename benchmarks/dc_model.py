"""The ``dcmodel`` tree of the side-by-side benchmarks: a Flax / Equinox-like model made of
:mod:`optree.dataclasses` classes, for the optree-compatible libraries (ours, optree 0.20.0).

A module of its own, imported only by those libraries' adapters (``libraries.py``), since the
other benchmark venvs have no optree; its classes live at module level so that treespecs
holding them can be pickled. The classes are registered in the benchmarks' namespace.
"""

from __future__ import annotations

import optree.dataclasses

NAMESPACE = 'bench'  # libraries.OptreeLibrary.NAMESPACE
BLOCKS = 64


@optree.dataclasses.dataclass(namespace=NAMESPACE)
class Dense:
    """A dense layer: two leaves and the name of its activation (metadata)."""

    weight: float
    bias: float
    activation: str = optree.dataclasses.field(default='gelu', pytree_node=False)


@optree.dataclasses.dataclass(namespace=NAMESPACE)
class Block:
    """A transformer-like block of three dense layers, named (metadata)."""

    attn: Dense
    mlp_in: Dense
    mlp_out: Dense
    name: str = optree.dataclasses.field(default='', pytree_node=False)


@optree.dataclasses.dataclass(namespace=NAMESPACE)
class Model:
    blocks: list[Block]
    name: str = optree.dataclasses.field(default='model', pytree_node=False)


def build(blocks: int = BLOCKS) -> Model:
    """64 blocks: 384 float leaves, 642 nodes."""
    return Model(
        [
            Block(
                Dense(i + 0.5, 0.25),
                Dense(i + 1.5, -0.25, activation='relu'),
                Dense(i + 2.5, 0.0, activation='identity'),
                name=f'block{i:02d}',
            )
            for i in range(blocks)
        ]
    )
