"""Test helper: run a module with a low limit on open files.

    python -m tests.nofile_limited LIMIT MODULE [ARGS...]

Sets both the soft and the hard RLIMIT_NOFILE to LIMIT (so the worker cannot raise it), then
runs MODULE as ``python -m MODULE ARGS`` would, in this same process. Unlike a ``preexec_fn``,
nothing runs between fork and exec in a test process that has threads.
"""

from __future__ import annotations

import resource
import runpy
import sys


def main(argv: list[str]) -> None:
    limit, module, *args = argv
    resource.setrlimit(resource.RLIMIT_NOFILE, (int(limit), int(limit)))
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
