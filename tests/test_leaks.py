"""100 000 tasks leave no references, objects or memory behind."""

import concurrent.futures as cf
import gc
import sys
import tracemalloc
import weakref


class Payload:
    pass


class PayloadError(Exception):
    pass


def raise_payload_error():
    raise PayloadError()


def echo(x):
    return x


def test_jobs_release_their_callable_arguments_and_results(pool_factory):
    pool = pool_factory(2)
    arg, kwarg = Payload(), Payload()
    base_arg, base_kwarg, base_fn = sys.getrefcount(arg), sys.getrefcount(kwarg), sys.getrefcount(echo)
    futures = [pool.submit(echo, arg) for _ in range(50_000)]
    futures += [pool.submit(lambda x=None, k=None: k, k=kwarg) for _ in range(50_000)]
    cf.wait(futures, timeout=120)
    assert all(f.done() for f in futures)
    del futures
    gc.collect()
    assert (sys.getrefcount(arg), sys.getrefcount(kwarg), sys.getrefcount(echo)) == (base_arg, base_kwarg, base_fn)


def test_results_and_exceptions_die_with_their_futures(pool_factory):
    pool = pool_factory(2)
    future = pool.submit(Payload)
    result = weakref.ref(future.result(timeout=10))
    failed = pool.submit(raise_payload_error)
    error = weakref.ref(failed.exception(timeout=10))
    del future, failed
    gc.collect()
    assert result() is None and error() is None


def test_arguments_are_released_before_the_result_is_delivered(pool_factory):
    pool = pool_factory(1)
    for _ in range(50):
        arg = Payload()
        alive = weakref.ref(arg)
        future = pool.submit(type, arg)
        del arg
        assert future.result(timeout=10) is Payload
        assert alive() is None


def test_memory_is_flat_over_100k_tasks(pool_factory):
    pool = pool_factory(2)

    def batch():
        cf.wait([pool.submit(echo, i) for i in range(25_000)], timeout=120)
        list(pool.map(echo, range(25_000), chunksize=100))

    batch()  # warm up allocator caches
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(2):
        batch()
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown < 256 * 1024, f"{grown} bytes still allocated after 100k tasks"
    assert pool.stats()["queued"] == 0
