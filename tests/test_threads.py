"""Thread policy: torch threads from the cores other programs leave free, or the user's count."""

from __future__ import annotations

import pytest
import torch

from fmscope import threads
from fmscope.errors import FmscopeError
from fmscope.threads import CpuSample, ThreadPolicy, free_between, requested_threads, threads_for


def test_threads_follow_free_cores():
    assert threads_for(2.0, 2) == 2  # idle two-core machine
    assert threads_for(1.05, 2) == 1  # one core taken by another program
    assert threads_for(1.6, 2) == 2
    assert threads_for(0.1, 2) == 1  # always one thread
    assert threads_for(15.2, 8) == 8  # never more than available


def test_own_cpu_time_counts_as_free():
    before = CpuSample(busy_s=100.0, own_s=10.0, wall_s=50.0)
    # 2 s of wall time, both cores busy: 2 core-seconds ours, 2 another program's
    after = CpuSample(busy_s=104.0, own_s=12.0, wall_s=52.0)
    assert free_between(before, after, cores=2) == pytest.approx(1.0)
    # only we were busy
    assert free_between(before, CpuSample(104.0, 14.0, 52.0), cores=2) == pytest.approx(2.0)
    # another program busy on one core while we slept
    assert free_between(before, CpuSample(102.0, 10.0, 52.0), cores=2) == pytest.approx(1.0)


def test_user_count_wins_and_bad_values_are_refused(monkeypatch):
    monkeypatch.delenv(threads.ENVIRONMENT_VARIABLE, raising=False)
    assert requested_threads() is None
    monkeypatch.setenv(threads.ENVIRONMENT_VARIABLE, "3")
    assert requested_threads() == 3
    assert requested_threads(1) == 1  # --threads beats the environment
    for bad in ("0", "two", "-1", "1.5"):
        monkeypatch.setenv(threads.ENVIRONMENT_VARIABLE, bad)
        with pytest.raises(FmscopeError, match="FMSCOPE_THREADS"):
            requested_threads()


def test_policy_sets_torch_threads(monkeypatch):
    monkeypatch.delenv(threads.ENVIRONMENT_VARIABLE, raising=False)
    original = torch.get_num_threads()
    try:
        assert ThreadPolicy(threads=1).apply() == 1 and torch.get_num_threads() == 1
        policy = ThreadPolicy(cores=2, ceiling=2)
        chosen = policy.apply()  # measured on this machine: 1 or 2, and what torch now uses
        assert chosen in (1, 2) and torch.get_num_threads() == chosen
        assert chosen == threads_for(policy.free_cores, 2)
    finally:
        torch.set_num_threads(original)


def test_cli_threads_option(capsys):
    from fmscope.cli import build_parser

    args = build_parser().parse_args(
        ["segment", "in.tif", "--box", "1", "2", "3", "4", "-o", "out.tif", "--threads", "1"]
    )
    assert args.threads == 1
    with pytest.raises(SystemExit) as usage:
        build_parser().parse_args(["segment", "in.tif", "--box", "1", "2", "3", "4", "-o", "out.tif", "--threads", "0"])
    assert usage.value.code == 2 and "--threads" in capsys.readouterr().err
