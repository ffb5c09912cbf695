"""Start a child that SIGINT interrupts, whatever this process inherited.

A shell that starts a job in the background without job control (``nohup cmd &``, ``(cmd &)``, some CI
runners) makes it ignore SIGINT, and an ignored signal stays ignored across fork and exec: Python then
installs no KeyboardInterrupt handler in the child, and a test that sends Ctrl-C sees the child carry on.
The prefix sets SIGINT back to its default and execs the command in the same process (same pid), where
Python installs its handler as it does for a user at a terminal.
"""

from __future__ import annotations

import sys

DEFAULT_SIGINT: list[str] = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL);"
    " os.execv(sys.argv[1], sys.argv[1:])",
]
