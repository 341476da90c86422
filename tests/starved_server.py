"""Test helper: the HTTP server in a process whose every descriptor something else has taken.

    python -m tests.starved_server LOG_EVERY_S

Starts the server on a free loopback port and prints it, then opens ``/dev/null`` until the
process is out of descriptors and prints ``starved``: from then on every accept fails. A line
``free`` on standard input gives the descriptors back (``freed``), ``stop`` stops the server.
The log goes to standard error as JSON.
"""

from __future__ import annotations

import os
import resource
import sys

from worker.connections import Limits
from worker.logs import configure_logging
from worker.webhooks import HttpServer, build_app

OPEN_FILES = 128


def main(argv: list[str]) -> int:
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))
    configure_logging(format="json", level="INFO")
    server = HttpServer(
        build_app(trigger=lambda: None), "127.0.0.1", 0, Limits(log_every_s=float(argv[0]))
    )
    server.start()
    print(server.port, flush=True)
    taken: list[int] = []
    try:
        while True:
            taken.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    print("starved", flush=True)
    for line in sys.stdin:
        if line.strip() == "free":
            for fd in taken:
                os.close(fd)
            taken = []
            print("freed", flush=True)
        elif line.strip() == "stop":
            break
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
