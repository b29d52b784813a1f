"""The adaptive controller against modelled workloads, on a fake clock: deterministic checks of
the decisions the live tests can only see through noise (GIL waits vs I/O waits, numpy vs
GIL-bound Python, saturation, hysteresis, cooldown)."""

from __future__ import annotations

import pytest
from freeagentics_rs.executor._sizing import WorkloadSizer


class Model:
    """A pool running tasks that each need `cpu` seconds of CPU and, uncontended, spend `share`
    of their wall time on it; together they can keep at most `capacity` cores busy (1 for
    GIL-bound Python, the core count for code that releases the GIL). Other processes leave the
    pool's threads a core only `on_core` of the time they are runnable. With `tasks`, that many
    are ready at a time (agents stepped together): the rest of them wait in the pool's queue."""

    def __init__(
        self, share: float, capacity: float, cpu: float = 0.002, on_core: float = 1.0, tasks: int | None = None
    ) -> None:
        self.share, self.capacity, self.cpu, self.on_core, self.tasks = share, capacity, cpu, on_core, tasks

    def queued(self, n: int) -> int:
        return 0 if self.tasks is None else max(0, self.tasks - n)

    def measure(self, n: int) -> tuple[float, float, float]:
        """(cores busy, wall seconds per task, run-delay seconds per task) with `n` threads."""
        n = n if self.tasks is None else min(n, self.tasks)
        delay = self.cpu * (1 / self.on_core - 1)
        uncontended_wall = self.cpu / self.share + delay
        rate = min(n * self.cpu / uncontended_wall, self.capacity * self.on_core)
        return rate, n * self.cpu / rate, delay  # Little's law: n tasks in flight


class Run:
    def __init__(self, **overrides) -> None:
        self.now = 0.0
        args = dict(
            min_workers=1,
            max_workers=64,
            io_workers=32,
            cpu_workers=2,
            mixed_workers=16,
            window=100,
            io_threshold=0.2,
            cpu_threshold=0.8,
            hysteresis=0.05,
            cooldown=0.1,
        )
        args.update(overrides)
        self.sizer = WorkloadSizer(**args, clock=lambda: self.now)

    def feed(self, model: Model, batches: int = 200) -> None:
        """Feeds batches measured the way a pool of the sizer's current size would measure them."""
        for _ in range(batches):
            rate, wall, delay = model.measure(self.sizer.target)
            per_second = rate / model.cpu  # tasks finished per second
            k = self.sizer.batch_size()
            start = self.now
            self.now += k / per_second
            queued = model.queued(self.sizer.target)
            self.sizer.add(
                k, k * model.cpu, k * wall, start, self.now - 1 / per_second, model.cpu, k * delay, queued=queued
            )

    @property
    def sizes(self) -> list[int]:
        return [e.to_workers for e in self.sizer.events]


def test_unknown_until_enough_samples():
    run = Run(min_workers=2)
    sizer = run.sizer
    assert (sizer.workload, sizer.target, sizer.need()) == ("unknown", 2, 4)
    assert sizer.add(3, 0.0, 0.03, 0.0, 0.02, 0.0) is None
    assert sizer.workload == "unknown"
    assert sizer.add(1, 0.0, 0.01, 0.025, 0.03, 0.0) == 32
    assert sizer.workload == "io"


@pytest.mark.parametrize(
    "share, workload, target",
    [(0.001, "io", 32), (0.5, "mixed", 16), (0.95, "cpu", 2)],
)
def test_uncontended_share_picks_the_class_target(share, workload, target):
    run = Run()
    run.feed(Model(share, capacity=1000))
    assert (run.sizer.workload, run.sizer.target) == (workload, target)


def test_gil_bound_python_after_io_shrinks_to_one_thread():
    run = Run()
    run.feed(Model(0.001, capacity=1))  # sleeping tasks
    assert (run.sizer.workload, run.sizer.target) == ("io", 32)
    # Pure Python: each thread would be busy all the time, but the GIL runs one at a time. At
    # 32 threads each task's own share is 1/32, which alone would look like I/O.
    run.feed(Model(1.0, capacity=1))
    assert (run.sizer.workload, run.sizer.target) == ("cpu", 1)
    last = run.sizer.events[-1]
    assert (last.from_workers, last.to_workers, last.workload, last.reason) == (32, 1, "cpu", "probe")


def test_on_a_busy_machine_waiting_for_a_core_is_not_io():
    # Other processes leave this pool 40% of a core: pure Python still is "cpu", at one thread.
    run = Run()
    run.feed(Model(1.0, capacity=1, on_core=0.4))
    assert (run.sizer.workload, run.sizer.target) == ("cpu", 1)
    assert run.sizer.cpu_share > 0.8
    run.feed(Model(0.001, capacity=1, cpu=0.00002, on_core=0.4))
    assert (run.sizer.workload, run.sizer.target) == ("io", 32)
    run.feed(Model(1.0, capacity=1, on_core=0.4))
    assert (run.sizer.workload, run.sizer.target) == ("cpu", 1)


def test_numpy_releasing_the_gil_is_not_mistaken_for_gil_bound_work():
    run = Run()
    run.feed(Model(0.001, capacity=2))
    run.feed(Model(1.0, capacity=2))  # two cores really used
    assert (run.sizer.workload, run.sizer.target) == ("cpu", 2)


def test_io_that_saturates_the_gil_settles_where_the_cpu_saturates_without_flapping():
    run = Run()
    # 10% CPU per task: ten threads keep the one GIL busy; more only queue for it.
    run.feed(Model(0.1, capacity=1))
    assert run.sizes == [32, 1, 10]  # classified I/O; probed: one thread loses the rate
    assert (run.sizer.workload, run.sizer.target) == ("io", 10)
    events = len(run.sizer.events)
    run.feed(Model(0.1, capacity=1), batches=500)
    assert len(run.sizer.events) == events, run.sizer.events


def test_switching_back_to_io_grows_again():
    run = Run()
    run.feed(Model(1.0, capacity=1))
    assert run.sizer.target == 1
    run.feed(Model(0.001, capacity=1, cpu=0.00001))
    assert (run.sizer.workload, run.sizer.target) == ("io", 32)


def test_a_share_on_the_threshold_does_not_flap():
    run = Run(io_workers=3, mixed_workers=2)
    for i in range(300):
        run.feed(Model(0.19 if i % 2 else 0.21, capacity=1000), batches=1)
    assert len(run.sizer.events) <= 1, run.sizer.events


def test_resizes_respect_the_cooldown():
    run = Run(cooldown=0.5)
    for i in range(20):
        run.feed(Model(0.001 if i % 2 else 0.95, capacity=1000), batches=20)
    times = [e.time for e in run.sizer.events]
    assert len(times) > 3
    assert all(b - a >= 0.5 for a, b in zip(times, times[1:], strict=False))


def test_sizes_stay_within_min_and_max():
    run = Run(min_workers=3, max_workers=12)
    run.feed(Model(0.001, capacity=1))
    assert run.sizer.target == 12
    run.feed(Model(1.0, capacity=1))
    assert run.sizer.target == 3
    assert all(3 <= e.to_workers <= 12 for e in run.sizer.events)


def test_tiny_tasks_get_larger_batches():
    run = Run()
    run.feed(Model(0.9, capacity=1000, cpu=0.000005), batches=5)
    assert run.sizer.batch_size() > run.sizer.need()
    assert run.sizer.batch_size() <= 4096


def test_a_new_phase_is_acted_on_without_waiting_out_the_window():
    run = Run(min_workers=2, window=100)
    run.feed(Model(1.0, capacity=1))
    assert run.sizer.target == 2
    io = Model(0.001, capacity=1, cpu=0.00002)
    run.feed(io, batches=1)
    assert run.sizer.target == 32


def test_a_backlog_grows_an_io_pool_past_its_class_target_and_it_stays():
    # 100 agents whose step mostly sleeps: at 32 threads 68 steps wait in the queue while the
    # CPU is far from saturated. The pool doubles until none waits, then keeps that size.
    run = Run(max_workers=256)
    sleepy = Model(0.01, capacity=2, tasks=100)
    run.feed(sleepy)
    assert run.sizes == [32, 64, 128]
    assert [e.reason for e in run.sizer.events] == ["classify", "backlog", "backlog"]
    events = len(run.sizer.events)
    run.feed(sleepy, batches=500)
    assert len(run.sizer.events) == events, run.sizer.events  # no backlog now: no shrinking back


def test_without_a_backlog_an_io_pool_stays_at_its_class_target():
    run = Run(max_workers=256)
    run.feed(Model(0.01, capacity=2, tasks=32))
    run.feed(Model(0.01, capacity=2))
    assert run.sizes == [32]


def test_a_backlog_of_gil_bound_work_does_not_grow_the_pool():
    # The same backlog, but the tasks' CPU part holds the GIL: threads past ten only queue for it.
    run = Run(max_workers=256)
    run.feed(Model(0.1, capacity=1, tasks=100), batches=500)
    assert max(run.sizes) == 32 and run.sizer.target == 10


def test_a_new_phase_after_a_backlog_forgets_the_size_it_grew_to():
    run = Run(max_workers=256)
    run.feed(Model(0.01, capacity=2, tasks=100))
    assert run.sizer.target == 128
    run.feed(Model(1.0, capacity=1, cpu=0.02, tasks=100))  # GIL-bound Python now, a new phase
    assert (run.sizer.workload, run.sizer.target) == ("cpu", 1)


def test_what_was_learned_survives_cpu_time_jitter_on_a_busy_machine():
    # Under load the same tasks' CPU time varies by more than 2x; the saturation point learned
    # by a probe still holds, and the pool is not probed (shrunk to one thread) again.
    run = Run()
    run.feed(Model(0.1, capacity=1))
    assert run.sizes == [32, 1, 10]
    events = len(run.sizer.events)
    for i in range(20):
        run.feed(Model(0.1, capacity=1, cpu=0.005 if i % 2 else 0.002), batches=20)
    assert len(run.sizer.events) == events, run.sizer.events


def test_on_a_crowded_machine_the_probe_is_no_larger_than_the_cores():
    # Pure Python at 32 threads with a core only 30% of its runnable time: the rate scaled to
    # whole cores reads 3 on a 2-core machine; a probe at 3 threads would be taken for "cpu" at a
    # size past the cores.
    run = Run()
    run.feed(Model(0.001, capacity=1))
    assert run.sizer.target == 32
    sizer, now = run.sizer, run.now
    for _ in range(4):  # 16 tasks of 10 ms CPU each over 0.18 s: 0.9 cores, 7 ms delay per task
        sizer.add(16, 0.16, 16 * 0.35, now, now + 0.18, 0.01, 16 * 0.0233)
        now += 0.2
        run.now = now
    last = sizer.events[-1]
    assert (last.reason, last.to_workers) == ("probe", 2), sizer.events


def test_a_backlog_of_tasks_that_are_not_mostly_waiting_does_not_grow_the_pool():
    # Tiny tasks submitted 100 at a time by a thread whose dispatch keeps the GIL busy: each is
    # on a core half its wall time ("mixed"), and they keep 0.03 cores busy (the dispatch's CPU
    # is not theirs). More threads would only add to the dispatch.
    run = Run(max_workers=256)
    sizer = run.sizer
    for _ in range(300):
        sizer.add(32, 32e-5, 64e-5, run.now, run.now + 0.01, 1e-5, queued=100)
        run.now += 0.011
    assert run.sizes == [16] and sizer.workload == "mixed"
