"""What this machine offers the process, and whether another process still runs."""
import os
from pathlib import Path


def cpus():
    """The CPU cores this process may run on: its affinity (a container's or `taskset`'s cpuset), not the host's count."""
    try: return len(os.sched_getaffinity(0)) or 1
    except AttributeError: return os.cpu_count() or 1


def alive(pid):
    """Whether process `pid` is running (a zombie left by a killed child is not)."""
    if not pid: return False
    try: os.kill(int(pid), 0)
    except ProcessLookupError: return False
    except PermissionError: return True  # someone else's process: it exists
    except (OSError, ValueError, OverflowError): return False
    try: return Path(f'/proc/{pid}/stat').read_text().split(')')[-1].split()[0] != 'Z'
    except OSError: return True
