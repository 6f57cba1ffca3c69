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


def describe(e):
    """One line for any exception: a CompError's message; what a failed write means; else its type."""
    import errno
    if isinstance(e, CompError): return str(e)
    # A copy, link or rename names its source first and what it was writing second (filename2).
    written = isinstance(e, OSError) and (e.filename2 or e.filename) or 'a file'
    if isinstance(e, OSError) and e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f'cannot write {written}: {"the disk is read-only" if e.errno == errno.EROFS else "permission denied"}; run comp in a folder you can write to'
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f'no room left on the disk writing {written}: free some space and run the command again'
    first = (str(e).strip().splitlines() or [''])[0][:200]
    return f'unexpected {type(e).__name__}{": " + first if first else ""} (set COMP_DEBUG=1 to see the traceback)'


def few(items, n=5):
    """The first `n` items joined for a message, with how many more there are."""
    items = list(items)
    return ', '.join(map(str, items[:n])) + (f' ... (+{len(items) - n})' if len(items) > n else '')
