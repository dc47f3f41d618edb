"""Thread policy: give torch as many intra-op threads as there are cores other programs leave free.

With a core taken by another program (napari's own thread, a browser, a second job), two torch
threads on two cores run at the speed of the slower, shared one: measured 2x slower than one
thread (benchmarks/speed.py). fmscope therefore counts the cores in use by *other* processes
(Linux ``/proc/stat`` minus this process's own CPU time, over the interval since the last look;
elsewhere the load average) and sets ``torch.set_num_threads`` to the free ones, never more than
torch's default. ``FMSCOPE_THREADS`` or an explicit count (CLI ``--threads``) overrides it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from fmscope.errors import FmscopeError

ENVIRONMENT_VARIABLE = "FMSCOPE_THREADS"
FIRST_SAMPLE_S = 0.2  # how long the first look at the CPUs lasts
MIN_INTERVAL_S = 1.0  # later looks reuse the time since the previous one, at most this often


@dataclass(frozen=True)
class CpuSample:
    """Cumulative CPU seconds at one moment: all CPUs busy, this process, and the wall clock."""

    busy_s: float
    own_s: float
    wall_s: float


def threads_for(free_cores: float, available: int) -> int:
    """Intra-op threads for ``free_cores`` cores not used by other programs, out of ``available``.

    A core counts as free when at least half of it is idle (rounding), and one thread always runs.
    """
    return max(1, min(available, int(free_cores + 0.5)))


def free_between(before: CpuSample, after: CpuSample, cores: int) -> float:
    """Cores left free by other processes between two samples (this process's use counts as free)."""
    wall = after.wall_s - before.wall_s
    if wall <= 0:
        return float(cores)
    others = max(0.0, (after.busy_s - before.busy_s) - (after.own_s - before.own_s)) / wall
    return max(0.0, cores - others)


def requested_threads(explicit: int | None = None) -> int | None:
    """The user's thread count: ``explicit`` (e.g. ``--threads``), else ``FMSCOPE_THREADS``, else None."""
    if explicit is not None:
        value, source = str(explicit), "--threads"
    elif os.environ.get(ENVIRONMENT_VARIABLE, "").strip():
        value, source = os.environ[ENVIRONMENT_VARIABLE].strip(), ENVIRONMENT_VARIABLE
    else:
        return None
    if not value.isdigit() or int(value) < 1:
        raise FmscopeError(
            f"{source} must be a whole number of threads >= 1, got '{value}'.",
            f"Give e.g. {source}=1 for a busy machine, or leave it unset to choose from free cores.",
        )
    return int(value)


def _cpu_sample() -> CpuSample | None:
    """Now's cumulative CPU times from /proc (Linux), or None where there is no /proc/stat."""
    try:
        with open("/proc/stat") as stat:
            fields = [float(v) for v in stat.readline().split()[1:]]
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    own = os.times()
    return CpuSample((sum(fields[:8]) - idle) / ticks, own.user + own.system, time.monotonic())


class ThreadPolicy:
    """Sets torch's intra-op threads from the cores other programs leave free, or from the user's count.

    Call :meth:`apply` before heavy work (each encoder call); it looks at the CPUs at most once per
    ``MIN_INTERVAL_S`` and costs nothing in between. ``cores`` defaults to the CPUs this process may
    use, ``ceiling`` to torch's own default thread count.
    """

    def __init__(self, threads: int | None = None, cores: int | None = None, ceiling: int | None = None) -> None:
        import torch

        self._torch = torch
        self.fixed = requested_threads(threads)
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.cores = cores or usable
        self.ceiling = ceiling or torch.get_num_threads()
        self._last: CpuSample | None = None
        self.threads = self.fixed or self.ceiling
        self.free_cores: float | None = None

    def apply(self) -> int:
        """Set and return the thread count for the next piece of work."""
        if self.fixed is not None:
            chosen = self.fixed
        else:
            free = self._measure()
            if free is None:
                return self.threads
            self.free_cores = free
            chosen = threads_for(free, min(self.cores, self.ceiling))
        if chosen != self._torch.get_num_threads():
            self._torch.set_num_threads(chosen)
        self.threads = chosen
        return chosen

    def _measure(self) -> float | None:
        now = _cpu_sample()
        if now is None:  # not Linux: the 1-minute load average, which includes this process
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
            return max(0.0, self.cores - load)
        if self._last is None:
            time.sleep(FIRST_SAMPLE_S)
            self._last, now = now, _cpu_sample()
        elif now.wall_s - self._last.wall_s < MIN_INTERVAL_S:
            return self.free_cores
        free = free_between(self._last, now, self.cores)
        self._last = now
        return free
