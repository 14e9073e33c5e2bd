"""Where a node's workers publish their metrics: one directory per running supervisor.

The supervisor creates it before forking (in /dev/shm when the machine has it, so that the
once-a-second snapshots never touch a disk) and passes it to the workers and the admin process
in ``FASTGW_METRICS_DIR``; a directory given in that variable by the operator is used as is
(and kept at exit).
"""

from __future__ import annotations

import os
import shutil
import tempfile

ENV = "FASTGW_METRICS_DIR"


def node_directory() -> str | None:
    """The directory of this node's metric snapshots, or None outside a supervised gateway."""
    return os.environ.get(ENV) or None


def create_node_directory() -> tuple[str, bool]:
    """The directory (created if needed) and whether this process made it (and removes it)."""
    given = node_directory()
    if given:
        os.makedirs(given, exist_ok=True)
        return given, False
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    path = tempfile.mkdtemp(prefix="fastgw-metrics-", dir=base)
    os.environ[ENV] = path
    return path, True


def remove_node_directory(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
