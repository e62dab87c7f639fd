"""Run a peer server and take it down with the test process.

Usage (by :mod:`tests.peers.servers`, not by hand)::

    python _guard.py <pipe-fd> -- <command> [args...]

The test process keeps the write end of a pipe and passes the read end here.
When the test process exits for any reason (including SIGKILL, where ``atexit``
hooks never run) the kernel closes the write end, the read below returns EOF and
the guard terminates the server: SIGTERM, then SIGKILL after a bound.

SIGTERM sent to the guard is forwarded to the server, and the guard exits with
the server's exit status, so stopping the guard stops the server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

KILL_AFTER_S = 5.0


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: _guard.py <pipe-fd> -- <command> [args...]", file=sys.stderr)
        return 2
    fd = int(argv[1])
    child = subprocess.Popen(argv[3:], stdin=subprocess.DEVNULL)

    def terminate() -> None:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, lambda *_: terminate())
    signal.signal(signal.SIGINT, lambda *_: terminate())

    def watch_parent() -> None:
        try:
            while os.read(fd, 64):
                pass
        except OSError:
            pass
        terminate()
        try:
            child.wait(KILL_AFTER_S)
        except subprocess.TimeoutExpired:
            child.kill()

    threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
    rc = child.wait()
    return rc if rc >= 0 else 128 - rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
