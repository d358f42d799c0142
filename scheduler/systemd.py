"""sd_notify without a dependency: READY, STATUS, WATCHDOG, STOPPING.

systemd passes ``NOTIFY_SOCKET`` to a ``Type=notify`` service; outside
systemd every call is a no-op. ``WATCHDOG_USEC`` tells how often to ping.
"""

from __future__ import annotations

import os
import socket


def notify(*states: str) -> bool:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall("\n".join(states).encode())
    return True


def watchdog_interval() -> float | None:
    """Half the watchdog period in seconds, or None without a watchdog."""
    usec = os.environ.get("WATCHDOG_USEC")
    return int(usec) / 2_000_000 if usec and usec.isdigit() else None
