"""Sphinx configuration for the optree documentation (``make docs``)."""

from __future__ import annotations

project = 'optree'
author = 'optree contributors'
copyright = 'optree contributors'
release = '0.1.0'

extensions = [
    'sphinx.ext.autodoc',
    'sphinx.ext.napoleon',
]

templates_path: list[str] = []
exclude_patterns = ['_build']
html_theme = 'alabaster'
autodoc_member_order = 'bysource'
