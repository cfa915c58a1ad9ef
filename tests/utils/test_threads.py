import pytest
import torch
from threadpoolctl import threadpool_limits

from skml.utils import _threads, thread_budget, threads_for, torch_threads


@pytest.fixture(autouse=True)
def fresh_sample(monkeypatch):
    monkeypatch.delenv("SKML_NUM_THREADS", raising=False)
    monkeypatch.setitem(_threads._sample, "reading", None)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _fake_stat(monkeypatch, idle_share, own_cores=0.0):
    """Readings one second apart where core c is idle idle_share[c] of the
    time and this process itself uses own_cores cores."""
    clock = {"t": 0.0}

    def reading():
        clock["t"] += 1.0
        t = clock["t"]
        cpus = {c: (round(100 * t * u), round(100 * t)) for c, u in idle_share.items()}
        return t, cpus, own_cores * t, len(idle_share)

    monkeypatch.setattr(_threads, "_reading", reading)
    monkeypatch.setattr(_threads.time, "sleep", lambda s: None)


def test_small_work_runs_single_threaded():
    assert threads_for(10) == 1
    with torch_threads(work=10) as n:
        assert n == 1 == torch.get_num_threads()


def test_busy_core_is_not_waited_on(monkeypatch):
    torch.set_num_threads(2)
    _fake_stat(monkeypatch, {0: 1.0, 1: 0.0})
    assert _threads.idle_cores() == pytest.approx(1.0)
    assert threads_for(1e9) == 1


def test_quiet_cores_are_used(monkeypatch):
    torch.set_num_threads(2)
    _fake_stat(monkeypatch, {0: 1.0, 1: 0.95})
    assert threads_for(1e9) == 2


def test_own_cpu_time_does_not_count_as_busy(monkeypatch):
    # both cores half busy, all of it this process's own work
    _fake_stat(monkeypatch, {0: 0.5, 1: 0.5}, own_cores=1.0)
    assert _threads.idle_cores() == pytest.approx(2.0)


def test_a_short_window_reuses_the_last_answer(monkeypatch):
    _fake_stat(monkeypatch, {0: 1.0, 1: 0.0})
    assert _threads.idle_cores() == pytest.approx(1.0)
    last = _threads._sample["reading"]
    # a reading 5 ms later is too short a window to measure anything
    monkeypatch.setattr(_threads, "_reading", lambda: (last[0] + 0.005, {}, last[2], 2))
    assert _threads.idle_cores() == pytest.approx(1.0)
    assert _threads._sample["reading"] is last


def test_budget_follows_torch_and_threadpoolctl():
    torch.set_num_threads(1)
    assert thread_budget() == 1 and threads_for(None) == 1
    torch.set_num_threads(2)
    with threadpool_limits(1):
        assert thread_budget() == 1


def test_environment_pins_the_count(monkeypatch):
    monkeypatch.setenv("SKML_NUM_THREADS", "3")
    assert threads_for(1) == 3
    with torch_threads(work=1):
        assert torch.get_num_threads() == 3
    monkeypatch.setenv("SKML_NUM_THREADS", "two")
    with pytest.raises(ValueError, match="SKML_NUM_THREADS"):
        threads_for(1)


def test_count_is_restored_also_on_error():
    torch.set_num_threads(2)
    with pytest.raises(RuntimeError), torch_threads(work=1):
        assert torch.get_num_threads() == 1
        raise RuntimeError
    assert torch.get_num_threads() == 2


def test_nested_block_chooses_within_the_outer_budget(monkeypatch):
    torch.set_num_threads(2)
    _fake_stat(monkeypatch, {0: 1.0, 1: 1.0})
    with torch_threads(work=1):
        assert torch.get_num_threads() == 1
        # the budget is still 2: the large inner block may use both cores
        with torch_threads(work=1e9) as inner:
            assert inner == 2 == torch.get_num_threads()
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_idle_cores_is_a_share_of_the_allowed_cores():
    idle = _threads.idle_cores()
    assert 0.0 <= idle <= len(_threads.os.sched_getaffinity(0)) + 1e-9


def test_first_answer_waits_for_a_long_enough_window(monkeypatch):
    # a reading taken just before (as at import) is too recent to measure:
    # the first call waits instead of answering without data
    _fake_stat(monkeypatch, {0: 1.0, 1: 0.0})
    first = _threads._reading()
    monkeypatch.setitem(_threads._sample, "reading", first)
    monkeypatch.setitem(_threads._sample, "idle", None)
    assert _threads.idle_cores() == pytest.approx(1.0)


def test_other_python_threads_leave_the_count_alone():
    import threading

    torch.set_num_threads(2)
    seen = []

    def work():
        with torch_threads(work=1) as n:
            seen.append((n, torch.get_num_threads()))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [(2, 2)]
    assert torch.get_num_threads() == 2
