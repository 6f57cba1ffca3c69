"""What this machine offers the process, and whether another process still runs."""
import os
from pathlib import Path


def cpus():
    """The CPU cores this process may run on: its affinity (a container's or `taskset`'s cpuset), not the host's count."""
    try: return len(os.sched_getaffinity(0)) or 1
    except AttributeError: return os.cpu_count() or 1


def started(pid):
    """When process `pid` started (clock ticks since boot, from /proc), or None where that cannot be read.
    With its pid it names one process: a pid reused by a later program has another start time."""
    try: return int(Path(f'/proc/{int(pid)}/stat').read_text().split(')')[-1].split()[19])
    except (OSError, ValueError, IndexError): return None


def alive(pid, since=None):
    """Whether process `pid` is running (a zombie left by a killed child is not); with `since` (its `started`),
    only if it is still that process, not a later one that got the same pid."""
    if not pid: return False
    if since is not None and started(pid) not in (None, since): return False
    try: os.kill(int(pid), 0)
    except ProcessLookupError: return False
    except PermissionError: return True  # someone else's process: it exists
    except (OSError, ValueError, OverflowError): return False
    try: return Path(f'/proc/{pid}/stat').read_text().split(')')[-1].split()[0] != 'Z'
    except OSError: return True


def device():
    """The GPU's name, or 'cpu' (asking starts CUDA: a process that forks data-parallel workers asks later)."""
    import torch
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu'
