"""Shutdown, interpreter exit, Ctrl-C and fork."""

import os
import threading

import pytest
from helpers import run_python


def test_shutdown_wait_runs_every_queued_job(pool_factory):
    pool = pool_factory(2)
    done = []
    for i in range(300):
        pool.submit(done.append, i)
    pool.shutdown(wait=True)
    assert sorted(done) == list(range(300))
    assert pool.stats()["workers"] == 0


def test_cancel_futures_cancels_the_queued_ones(pool_factory):
    pool = pool_factory(1)
    gate, started = threading.Event(), threading.Event()
    running = pool.submit(lambda: (started.set(), gate.wait(30))[1])
    assert started.wait(10)
    queued = [pool.submit(int) for _ in range(50)]
    threading.Timer(0.1, gate.set).start()
    pool.shutdown(wait=True, cancel_futures=True)
    assert running.result() is True
    assert all(f.cancelled() for f in queued)
    assert pool.stats()["queued"] == 0


@pytest.mark.parametrize("wait", [True, False])
def test_shutdown_from_inside_a_task(pool_factory, wait):
    pool = pool_factory(2)
    later = []

    def stopper():
        for i in range(20):
            pool.submit(later.append, i)
        pool.shutdown(wait=wait)
        return "stopped"

    assert pool.submit(stopper).result(timeout=30) == "stopped"
    pool.shutdown(wait=True)
    assert sorted(later) == list(range(20))
    with pytest.raises(RuntimeError):
        pool.submit(int)


def test_a_pool_never_shut_down_does_not_hang_exit():
    out = run_python(
        """
        import time, freeagentics_rs
        pool = freeagentics_rs.WorkStealingThreadPool(4)
        futures = [pool.submit(time.sleep, 0.01) for _ in range(20)]
        orphan = freeagentics_rs.WorkStealingThreadPool(2)
        orphan.submit(print, "ran")
        del orphan
        print("exiting")
        """,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "exiting" in out.stdout and "ran" in out.stdout
    assert out.stderr == ""


def test_submit_after_interpreter_shutdown_started():
    out = run_python(
        """
        import atexit, freeagentics_rs
        pool = freeagentics_rs.WorkStealingThreadPool(1)
        def late():
            try:
                pool.submit(int)
            except RuntimeError as e:
                print(e)
        atexit.register(late)
        """
    )
    assert out.returncode == 0, out.stderr
    assert "cannot schedule new futures after interpreter shutdown" in out.stdout


@pytest.mark.parametrize("waiter", ["result", "shutdown"])
def test_ctrl_c_interrupts_a_blocking_wait_on_the_main_thread(waiter):
    out = run_python(
        f"""
        import os, signal, threading, time, freeagentics_rs
        pool = freeagentics_rs.WorkStealingThreadPool(1)
        gate = threading.Event()
        future = pool.submit(gate.wait, 60)
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
        start = time.monotonic()
        try:
            future.result() if "{waiter}" == "result" else pool.shutdown(wait=True)
        except KeyboardInterrupt:
            print("interrupted after", round(time.monotonic() - start, 1))
        gate.set()
        pool.shutdown(wait=True)
        """,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "interrupted after" in out.stdout
    assert float(out.stdout.split()[-1]) < 30  # promptly, not after the task's 60 s


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_after_fork_the_child_can_use_new_and_old_pools():
    out = run_python(
        """
        import os, warnings, freeagentics_rs
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
        old = freeagentics_rs.WorkStealingThreadPool(2)
        assert old.submit(pow, 2, 3).result() == 8
        pid = os.fork()
        if pid == 0:
            try:
                with freeagentics_rs.WorkStealingThreadPool(2) as new:
                    a = sum(new.map(abs, range(-100, 0), chunksize=7))
                b = old.submit(pow, 3, 2).result(timeout=30)
                old.shutdown(wait=True)
                os._exit(0 if (a, b) == (5050, 9) else 1)
            except BaseException:
                import traceback; traceback.print_exc()
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
        print("parent", old.submit(pow, 4, 2).result(timeout=30))
        old.shutdown()
        """,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["child", "0", "parent", "16"]


def test_ctrl_c_ends_a_process_stuck_in_the_exit_time_shutdown(run_isolated):
    # A job blocked forever keeps the exit-time join waiting: one SIGINT must end the process,
    # as it does with ThreadPoolExecutor (which reports the interrupt and exits with status 0).
    out = run_isolated(
        """
        import os, signal, threading, time, freeagentics_rs
        pool = freeagentics_rs.WorkStealingThreadPool(1)
        started = threading.Event()
        pool.submit(lambda: (started.set(), threading.Event().wait()))
        assert started.wait(30)

        def interrupt():
            time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=interrupt, daemon=True).start()
        print("exiting", flush=True)
        """,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "exiting\n"
    assert "KeyboardInterrupt" in out.stderr
