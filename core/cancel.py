"""Cooperative cancellation for long core jobs (training, batch segmentation, export).

The GUI or the command line owns a :class:`CancelToken` and calls :meth:`CancelToken.cancel`; the job
checks it between steps and stops by raising :class:`Cancelled`, so no step is ever left half done.
"""

from __future__ import annotations

import threading


class Cancelled(Exception):
    """Raised by a job that stopped because its token was cancelled."""


class CancelToken:
    """A thread-safe flag that a job polls between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the job to stop at its next check."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` has been called."""
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise :class:`Cancelled` when the token was cancelled."""
        if self._event.is_set():
            raise Cancelled("cancelled by the user")


def check(token: CancelToken | None) -> None:
    """Raise :class:`Cancelled` if ``token`` is given and cancelled; do nothing for ``None``."""
    if token is not None:
        token.raise_if_cancelled()
