"""User-facing errors.

Anything the user can fix (a missing file, a bad config value, an empty corpus) is raised as
`SlovoError`; the CLI prints its message as one line on stderr and exits non-zero, without a
traceback. Everything else is a bug and keeps its traceback.
"""


class SlovoError(Exception):
    """A problem with the user's input, stated in one line that names the file, field or value."""

    exit_code = 2


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (or its type's name when it has none), for one-line reports."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def need(cond: bool, message: str) -> None:
    """A value check: raise the one-line SlovoError `message` unless `cond`."""
    if not cond:
        raise SlovoError(message)


def one_of(key: str, value: str, choices) -> None:
    """A choice check against a registry (schedules, optimizers, tracker sinks), listing the choices."""
    need(value in choices, f"{key}: must be one of {', '.join(choices)}; got {value!r}")
