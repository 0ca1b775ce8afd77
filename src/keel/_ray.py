"""Connecting to a Ray cluster the user runs: one place for the checks and the errors.

Keel never starts a distributed engine of its own; where a job asks for one
(``--ray-address``), it connects to the cluster there, fails fast when nothing listens,
and disconnects afterwards if it connected.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from keel.errors import KeelInputError


def reachable(address: str, seconds: float = 5.0) -> None:
    """Fail fast (KeelInputError) when nothing listens at ``HOST:PORT``.

    ``ray.init`` itself retries an unreachable address for minutes.
    """
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise KeelInputError(f"--ray-address must be HOST:PORT, not {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=seconds):
            pass
    except OSError as exc:
        raise KeelInputError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}"
            " (start one with `ray start --head`, or check the address)"
        ) from None


@contextmanager
def connected(address: str) -> Iterator[Any]:
    """The ``ray`` module, connected to the cluster at ``address`` for the block."""
    try:
        import ray
    except ImportError:  # pragma: no cover - the [ray] extra
        from keel._extras import install_line

        raise KeelInputError(f"--ray-address needs Ray: {install_line('ray')}") from None
    started_here = not ray.is_initialized()
    if started_here:
        reachable(address)
        try:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise KeelInputError(
                f"cannot reach the Ray cluster at {address}: {str(exc).splitlines()[0]}"
            ) from None
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()


__all__ = ["connected", "reachable"]
