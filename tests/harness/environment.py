"""What the tests read from their environment (standard library only)."""

from __future__ import annotations

import os


def in_ci() -> bool:
    """Whether ``CI`` is set to a true value: missing prerequisites fail instead of skipping."""
    return os.environ.get('CI', '').strip().lower() in {'1', 'true', 'yes'}
