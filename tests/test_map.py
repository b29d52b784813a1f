"""WorkStealingThreadPool.map: ordered, lazy, chunked."""

import concurrent.futures as cf
import gc
import itertools
import threading

import pytest


def slow_square(x, gate=None):
    if gate is not None and x == 3:
        gate.wait(30)
    return x * x


@pytest.mark.parametrize("chunksize", [1, 2, 7, 1000])
def test_results_are_in_input_order(pool_factory, chunksize):
    pool = pool_factory(3)
    assert list(pool.map(abs, range(-500, 500), chunksize=chunksize)) == [abs(i) for i in range(-500, 500)]


def test_several_iterables_zip_to_the_shortest(pool_factory):
    pool = pool_factory(2)
    assert list(pool.map(pow, [2, 3, 4], [3, 2, 1, 99], chunksize=2)) == [8, 9, 4]
    assert list(pool.map(abs, [])) == []


def test_map_is_lazy_it_yields_before_later_items_finish(pool_factory):
    pool = pool_factory(2)
    gate = threading.Event()
    results = pool.map(lambda x: slow_square(x, gate), range(6))  # returns at once
    assert next(results) == 0 and next(results) == 1 and next(results) == 4
    gate.set()
    assert list(results) == [9, 16, 25]


@pytest.mark.parametrize("chunksize", [1, 4])
def test_an_exception_comes_at_its_position(pool_factory, chunksize):
    pool = pool_factory(2)

    def f(x):
        if x == 5:
            raise ValueError("five")
        return x

    results = pool.map(f, range(10), chunksize=chunksize)
    assert [next(results) for _ in range(5)] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="five"):
        next(results)


def test_timeout_is_a_timeout_error(pool_factory):
    pool = pool_factory(1)
    gate = threading.Event()
    results = pool.map(gate.wait, [30], timeout=0.05)
    with pytest.raises(cf.TimeoutError):
        list(results)
    gate.set()


def test_buffersize_reads_inputs_lazily_so_infinite_iterables_work(pool_factory):
    pool = pool_factory(2)
    consumed = []

    def source():
        for i in itertools.count():
            consumed.append(i)
            yield i

    results = pool.map(abs, source(), chunksize=3, buffersize=2)
    assert [next(results) for _ in range(10)] == list(range(10))
    assert len(consumed) < 10 + 3 * 3  # only a bounded window was read ahead
    results.close()


def test_closing_the_iterator_cancels_pending_chunks(pool_factory):
    pool = pool_factory(1)
    gate = threading.Event()
    ran = []

    def f(x):
        if x == 0:
            gate.wait(30)
        ran.append(x)
        return x

    results = pool.map(f, range(50))
    results.close()
    gate.set()
    pool.shutdown(wait=True)
    assert len(ran) < 50


def test_a_map_dropped_before_iteration_still_runs_every_call(pool_factory):
    # As Executor.map's generator: an iterator collected before its first next() cancels
    # nothing (only a started one cancels what has not run, as closing it does).
    pool = pool_factory(1)
    gate = threading.Event()
    ran = []

    def f(x):
        if x == 0:
            gate.wait(30)
        ran.append(x)

    pool.map(f, range(10))
    gc.collect()
    gate.set()
    pool.shutdown(wait=True)
    assert sorted(ran) == list(range(10))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"chunksize": 0}, ValueError, "chunksize must be >= 1"),
        ({"chunksize": 1.5}, TypeError, "chunksize must be an int"),
        ({"buffersize": 0}, ValueError, "buffersize must be None or > 0"),
        ({"buffersize": "2"}, TypeError, "buffersize must be an integer or None"),
    ],
)
def test_bad_map_arguments_name_the_argument(pool_factory, kwargs, error, message):
    pool = pool_factory(1)
    with pytest.raises(error, match=message):
        pool.map(abs, [1], **kwargs)
    with pytest.raises(TypeError, match="fn must be a callable"):
        pool.map(None, [1])
