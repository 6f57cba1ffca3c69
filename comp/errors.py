"""Errors a user can fix. The CLI prints them as one line; `COMP_DEBUG=1` shows the traceback."""


class CompError(Exception):
    """A problem with the user's input or environment, with a message that says how to fix it."""


class DataError(CompError):
    """The competition folder is missing or malformed."""


class ConfigError(CompError):
    """An option or recipe value is not usable."""


class SubmissionError(CompError):
    """A submission file does not match the competition."""


class KaggleError(CompError):
    """Kaggle's API refused or failed a request."""
