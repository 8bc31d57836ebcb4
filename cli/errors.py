"""The one kind of failure a command reports: one line on stderr and an exit code, no traceback."""

from __future__ import annotations

# Exit codes: 1 for failures (unreachable, not found, conflicts, a failed execution), 2 for input
# the user can fix (usage, invalid files or values), 130 for Ctrl-C.
FAILURE = 1
USAGE = 2
INTERRUPTED = 130


class CliError(Exception):
    """A failure worth one line: `quaero: <message>`."""

    def __init__(self, message: str, exit_code: int = FAILURE, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        # The HTTP status when the gateway refused the request.
        self.status = status
