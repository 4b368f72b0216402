"""Fixtures shared by several test folders."""

import os
import tempfile

import pytest
import torch

# The app's user settings (File ▸ Open recent) go to a temporary folder, also in the app's child processes,
# never to the tester's own ~/.config.
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="lrpseg-test-config-")


@pytest.fixture
def one_torch_thread():
    """Tiny models gain nothing from threads; on a shared CPU a thread team waits for its slowest member."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
