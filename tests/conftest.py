"""Fixtures shared by several test folders."""

import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """Tiny models gain nothing from threads; on a shared CPU a thread team waits for its slowest member."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
