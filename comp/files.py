"""Atomic file writes, so an interrupted command never leaves a half-written file."""
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    The file gets the mode any other new file would (0666 less the umask), not mkstemp's private 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp): os.unlink(tmp)


def write_text(path, text):
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp: Path(tmp).write_text(text)
    return Path(path)


def write_json(path, obj):
    """Write `obj` as indented JSON to `path` atomically."""
    return write_text(path, json.dumps(obj, indent=2, default=str) + '\n')


def read_json(path):
    """Read a JSON file."""
    return json.loads(Path(path).read_text())


def write_csv(path, df, **kwargs):
    """Write a DataFrame as CSV to `path` atomically."""
    with atomic_path(path) as tmp: df.to_csv(tmp, index=False, **kwargs)
    return Path(path)
