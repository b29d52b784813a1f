"""Many threads submitting, cancelling, resizing and shutting down at once, checked against a
sequential model: every accepted task runs at most once, and exactly once unless it was
cancelled."""

import concurrent.futures as cf
import random
import threading
import time

import pytest
from freeagentics_rs import AdaptiveThreadPoolExecutor, WorkStealingThreadPool


def hammer(backend, seed, submitters=4, per_thread=400, workers=3, resizing=False):  # noqa: C901 (one stress scenario, read top to bottom)
    rng = random.Random(seed)
    if resizing:
        # Its own controller resizes it, and so does a thread at random.
        pool = AdaptiveThreadPoolExecutor(
            min_workers=1, max_workers=8, io_workers=6, cooldown=0, window=8, backend=backend
        )
    else:
        pool = WorkStealingThreadPool(workers, backend=backend)
    runs = [0] * (submitters * per_thread)
    runs_lock = threading.Lock()
    accepted: dict[int, cf.Future] = {}
    accepted_lock = threading.Lock()
    shutdown_at = rng.randrange(submitters * per_thread // 2, submitters * per_thread)
    counter = iter(range(10**9))

    def task(i, nested):
        with runs_lock:
            runs[i] += 1
        if nested:
            try:
                return pool.submit(lambda: i).result()
            except (RuntimeError, cf.CancelledError):  # shut down, or cancelled by it, under us
                return i
        return i

    def submitter(k):
        local = random.Random(seed * 1000 + k)
        for j in range(per_thread):
            i = k * per_thread + j
            if next(counter) == shutdown_at:
                pool.shutdown(wait=False, cancel_futures=local.random() < 0.5)
            try:
                future = pool.submit(task, i, local.random() < 0.2)
            except RuntimeError:
                continue
            with accepted_lock:
                accepted[i] = future
            if local.random() < 0.1:
                future.cancel()

    submitting = threading.Event()

    def resizer():
        local = random.Random(seed)
        while submitting.is_set():
            pool._core.resize(local.randint(1, 8))
            time.sleep(0.0002)  # a spinning thread would starve the others of the GIL

    threads = [threading.Thread(target=submitter, args=(k,)) for k in range(submitters)]
    submitting.set()
    resizer_thread = threading.Thread(target=resizer)
    if resizing:
        resizer_thread.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    submitting.clear()
    if resizing:
        resizer_thread.join()
    pool.shutdown(wait=True)
    assert pool.stats()["workers"] == 0
    for i, future in accepted.items():
        assert future.done(), i
        if future.cancelled():
            assert runs[i] == 0, i
        else:
            assert future.result() == i and runs[i] == 1, i
    assert sum(runs) == sum(1 for f in accepted.values() if not f.cancelled())
    assert all(runs[i] == 0 for i in range(len(runs)) if i not in accepted)


@pytest.mark.parametrize("resizing", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_random_submit_cancel_shutdown(backend, seed, resizing):
    hammer(backend, seed, resizing=resizing)


@pytest.mark.stress
@pytest.mark.parametrize("resizing", [False, True])
@pytest.mark.parametrize("seed", range(40))
def test_random_submit_cancel_shutdown_long(backend, seed, resizing):
    workers = random.Random(seed).randint(1, 8)
    hammer(backend, seed, submitters=8, per_thread=2000, workers=workers, resizing=resizing)
