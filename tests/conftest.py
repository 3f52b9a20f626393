"""Shared pytest fixtures."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def float64():
    """Brute-force comparisons in double precision; the default dtype is restored afterwards.

    Modules that compare against brute force use it for every test with
    ``pytestmark = pytest.mark.usefixtures("float64")``.
    """
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
