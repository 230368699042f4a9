"""optree.dataclasses with hand-written expected values: dataclass nodes, fields kept out of the
tree, make_dataclass, the errors. No reference interpreter needed (the values were read off
optree 0.20.0)."""

from __future__ import annotations

import dataclasses

import pytest

import optree
from optree import dataclasses as odc

NS = 'plain-dataclasses'


@odc.dataclass(namespace=NS)
class Pt:
    x: float
    y: float = 0.0
    tag: str = odc.field(default='t', pytree_node=False)


def test_flatten_keeps_metadata_fields_out():
    leaves, spec = optree.tree_flatten(Pt(1.0, 2.0), namespace=NS)
    assert leaves == [1.0, 2.0]
    assert repr(spec) == (
        f"PyTreeSpec(CustomTreeNode(Pt[(('tag', 't'),)], [*, *]), namespace={NS!r})"
    )


def test_paths_and_accessors_name_the_fields():
    assert optree.tree_paths(Pt(1.0, 2.0), namespace=NS) == [('x',), ('y',)]
    accessors = optree.tree_accessors(Pt(1.0, 2.0), namespace=NS)
    assert [a.codify('p') for a in accessors] == ['p.x', 'p.y']
    assert [type(a[0]).__name__ for a in accessors] == ['DataclassEntry', 'DataclassEntry']


def test_map_rebuilds_the_dataclass():
    assert optree.tree_map(lambda v: v * 2, Pt(1.0, 2.0, tag='z'), namespace=NS) == Pt(
        2.0, 4.0, tag='z'
    )


def test_a_leaf_outside_its_namespace():
    leaves, spec = optree.tree_flatten(Pt(1.0))
    assert leaves == [Pt(1.0, 0.0, 't')]
    assert repr(spec) == 'PyTreeSpec(*)'


def test_it_is_a_standard_dataclass():
    assert dataclasses.is_dataclass(Pt)
    assert [f.name for f in dataclasses.fields(Pt)] == ['x', 'y', 'tag']
    assert odc.field(pytree_node=False).metadata == {'pytree_node': False}


def test_make_dataclass():
    made = odc.make_dataclass('M', ['p', ('q', int)], namespace=NS)
    leaves, spec = optree.tree_flatten(made(1, 2), namespace=NS)
    assert leaves == [1, 2]
    assert repr(spec) == f'PyTreeSpec(CustomTreeNode(M[()], [*, *]), namespace={NS!r})'


def test_applying_twice_raises():
    with pytest.raises(
        TypeError, match=r'@optree.dataclasses.dataclass\(\) cannot be applied to Pt more than once'
    ):
        odc.dataclass(namespace=NS)(Pt)
