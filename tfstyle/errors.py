"""The error type for problems a user can fix: bad files, bad flags, bad paths."""


class InputError(ValueError):
    """Bad user input. Entry points print its message on one line and exit with status 2."""
