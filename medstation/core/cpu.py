"""How many CPU cores are free for this process right now, so inference can use that many threads.

torch's CPU kernels run on an OpenMP team of ``torch.get_num_threads()`` threads that meet at a
barrier after every operation. When other processes hold cores, one member of the team is
descheduled and the rest wait for it at every barrier: on 2 cores with 2 busy processes beside it a
2-thread detection runs 4-10x slower than quiet, far worse than its fair share. A team no larger
than the cores the others leave free never waits on a member that is not running.

``CpuShare.sample()`` reads the machine's busy time from ``/proc/stat`` and this process's own CPU
time (``os.times``) since the previous sample: what the *other* processes used, in cores, is the
difference. ``threads()`` is the free part, rounded, between 1 and ``most``. Before the first interval
can be measured (under 50 ms since the share was made) it goes by the kernel's count of runnable
threads right now (``procs_running``, the caller's own thread taken off): a coarser, instant figure,
so that the very first piece of work (a lung mask) is sized too. Where ``/proc/stat`` cannot be read
(not Linux) it answers ``most``: nothing measured, nothing changed.
"""

from __future__ import annotations

import os
import time

PROC_STAT = "/proc/stat"


def cores() -> int:
    """The cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _machine_busy_s(path: str = PROC_STAT) -> float | None:
    """Seconds of busy CPU time summed over the machine's cores since boot (None: unreadable)."""
    try:
        with open(path, encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 5:
        return None
    try:
        ticks = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    except ValueError:
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


def _procs_running(path: str = PROC_STAT) -> int | None:
    """Threads runnable on the machine at this instant (the kernel's ``procs_running``), or None."""
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                if line.startswith("procs_running"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


class CpuShare:
    """The cores other processes leave free, measured between calls (see the module)."""

    def __init__(self, most: int | None = None, *, stat_path: str = PROC_STAT) -> None:
        self.cores = cores()
        self.most = max(1, int(most) if most else self.cores)
        self._path = stat_path
        self._last = self._read()
        #: the other processes' load, in cores, over the last interval (None: not measured yet)
        self.others: float | None = None

    def _read(self) -> tuple[float, float | None, float]:
        return time.monotonic(), _machine_busy_s(self._path), _own_cpu_s()

    def sample(self) -> float | None:
        """The other processes' CPU use, in cores, since the previous sample (None: not measurable,
        or under 50 ms since the last sample, which the kernel's 10 ms ticks cannot resolve)."""
        now = self._read()
        wall = now[0] - self._last[0]
        if now[1] is None or self._last[1] is None:
            return None
        if wall < 0.05:
            return self.others
        busy = now[1] - self._last[1]
        own = now[2] - self._last[2]
        self._last = now
        self.others = min(float(self.cores), max(0.0, (busy - own) / wall))
        return self.others

    def threads(self) -> int:
        """Threads for the next piece of work: the free cores, rounded, 1 to ``most``."""
        others = self.sample()
        if others is None:
            running = _procs_running(self._path)
            if running is None:
                return self.most
            others = float(max(0, running - 1))  # the caller's own thread is one of them
        free = self.cores - others
        return max(1, min(self.most, int(free + 0.5)))
