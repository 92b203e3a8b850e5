"""The one error of the tuning tools, inside the daemon's hierarchy (the CLI prints it, exit 2)."""
from daemon.errors import DaemonError


class InputError(DaemonError):
    """A file given to scan or tune is unusable: one line naming the file (and the key or item)."""
