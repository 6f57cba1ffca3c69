"""Atomic file and folder writes, so an interrupted command never leaves a half-written file or folder; hard links
of images."""
import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import DataError


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
    except (OSError, RuntimeError) as e:
        if not no_room(e): raise
        written = os.path.getsize(tmp) if os.path.exists(tmp) else 0
        os.unlink(tmp)  # a partial file would keep the disk full
        from .errors import DiskError
        raise DiskError(f'no room on the disk for {path}: it filled after {size_text(written)} of it were written '
                        f'({size_text(shutil.disk_usage(path.parent).free)} free now); free at least that much and '
                        'run the command again') from e
    finally:
        if os.path.exists(tmp): os.unlink(tmp)


@contextmanager
def atomic_dir(dest):
    """Yield a hidden temporary folder beside `dest` (which must be absent or empty); rename it to `dest` only if the
    block succeeds, so an interrupted command leaves nothing half-made. The folder gets the mode any other new folder
    would (0777 less the umask), not mkdtemp's private 0700. Its name holds this process's id, so one that a killed
    process left is swept by the next call for the same `dest`. Errors name `dest`, never the temporary folder."""
    from .errors import CompError, DiskError
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sweep_partial(dest)
    try: tmp = Path(tempfile.mkdtemp(prefix=f'.{dest.name}.{os.getpid()}.', dir=dest.parent))
    except OSError as e: raise OSError(e.errno, e.strerror, str(dest)) from e   # read-only: the folder asked for
    try:
        try: yield tmp
        except (OSError, RuntimeError, DiskError) as e:
            if not (isinstance(e, DiskError) or no_room(e)): raise
            # Files hard-linked from elsewhere took no room: what was written is what was copied.
            written = sum(f.stat().st_size for f in tmp.rglob('*') if f.is_file() and f.stat().st_nlink == 1)
            raise DiskError(f'no room on the disk for {dest}: it filled after {size_text(written)} were written there '
                            f'({size_text(shutil.disk_usage(dest.parent).free)} free now); free more than that and run '
                            'the command again') from e
        os.chmod(tmp, 0o777 & ~_umask())
        try:
            if dest.exists(): dest.rmdir()   # the empty folder the caller's checks allowed
            tmp.rename(dest)                 # refused over a folder that is not empty: never merged or replaced
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR): raise
            raise CompError(f'{dest} was written by another command meanwhile and is kept as it is: delete it and run '
                            'this again, or choose another folder') from None
    finally:
        if tmp.exists(): shutil.rmtree(tmp)


def sweep_partial(dest):
    """Remove the hidden partial folders that killed writes of `dest` left (`.NAME.PID.*` of a process that is gone)."""
    from .machine import alive
    for d in Path(dest).parent.glob(f'.{Path(dest).name}.*'):
        pid = d.name[len(Path(dest).name) + 2:].split('.')[0]
        if d.is_dir() and pid.isdigit() and not alive(int(pid)): shutil.rmtree(d, ignore_errors=True)


def no_room(e):
    """Whether an exception from writing a file means the disk (or the quota, or the file size limit) is full.

    torch.save reports it as a RuntimeError of its zip writer, without an errno."""
    if isinstance(e, OSError): return e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    return isinstance(e, RuntimeError) and ('write failed' in str(e) or 'unexpected pos' in str(e))


def size_text(n):
    """Bytes as a short text: 12.3 MB."""
    for unit in ('bytes', 'KB', 'MB', 'GB'):
        if n < 1024 or unit == 'GB': return f'{n:.0f} {unit}' if unit == 'bytes' else f'{n:.1f} {unit}'
        n /= 1024


def write_text(path, text):
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp: Path(tmp).write_text(text)
    return Path(path)


def write_json(path, obj):
    """Write `obj` as indented JSON to `path` atomically."""
    return write_text(path, json.dumps(obj, indent=2, default=str) + '\n')


def read_json(path):
    """Read a JSON file; one that is not valid JSON (cut short, edited by hand) is a CompError naming it."""
    text = Path(path).read_text()
    try: return json.loads(text)
    except ValueError as e:
        from .errors import CompError
        raise CompError(f'{path} is not valid JSON ({e}): restore it, or delete it if comp can write it again') from None


def write_csv(path, df, **kwargs):
    """Write a DataFrame as CSV to `path` atomically."""
    with atomic_path(path) as tmp: df.to_csv(tmp, index=False, **kwargs)
    return Path(path)


def link_or_copy(src, dst):
    """A hard link of `src` at `dst` (no copy when both are on one disk), else a copy; parent folders made."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    try: os.link(src, dst)
    except OSError: shutil.copy2(src, dst)


STATE_VAR = 'COMP_STATE_DIR'


def state_dir():
    """Where comp keeps what it remembers between commands (which image sets decode): `$COMP_STATE_DIR`,
    else ~/.cache/comp. Not the decode-once cache of a run (comp.cache)."""
    if 'COMP_CACHE' in os.environ: raise DataError(f'COMP_CACHE is now called {STATE_VAR}: rename the variable')
    return Path(os.environ.get(STATE_VAR) or Path.home() / '.cache' / 'comp')
