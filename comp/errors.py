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


class DiskError(CompError):
    """A file could not be written: the disk is full or read-only."""


class TrainingError(CompError):
    """Training cannot go on (a loss that is not finite). Raised inside fastai callbacks, whose wrapper rewrites an
    exception's args, so the message is kept apart."""

    def __init__(self, msg):
        super().__init__(msg)
        self.msg = msg

    def __str__(self): return self.msg
