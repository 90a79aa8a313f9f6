"""The one base class of every error meshray reports to a user.

Each module raises its own subclass (``ManifestError``, ``RenderError``, ``SchemaError``…)
with a message fit to print as is; the CLI catches :class:`MeshrayError`, prints
``meshray <verb>: <message>`` on one line and exits with the error's ``exit_code``.
Anything else that escapes is a bug and is reported as an internal error.
"""

from __future__ import annotations

# exit status of the CLI: 0 success, 1 problems found, 2 the command could not run
OK, PROBLEMS, UNUSABLE = 0, 1, 2


class MeshrayError(Exception):
    """A failure with a message for the user; ``exit_code`` is what the CLI exits with."""

    exit_code: int = UNUSABLE


class UsageError(MeshrayError):
    """The command cannot run as asked (bad arguments, missing files); the message says why."""
