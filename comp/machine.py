"""What this machine offers the process."""
import os


def cpus():
    """The CPU cores this process may run on: its affinity (a container's or `taskset`'s cpuset), not the host's count."""
    try: return len(os.sched_getaffinity(0)) or 1
    except AttributeError: return os.cpu_count() or 1
