# W5: four runs of naive fib(27), serially vs split over 2 threads (2 runs
# each), and over 2 processes (W5p, multiprocessing with fork); speedup =
# serial time / split time. Twin of bench/w5.lua; the C
# baseline of the same shape is bench/fib_pthread.c.
# Run: python3 bench/w5.py [repeats] [n]
# Each time is the median over `repeats` rounds (serial and threaded
# alternate in each round), after one warm-up round. The threaded time
# includes starting and joining the two threads (processes).
import multiprocessing
import statistics
import sys
import threading
import time

REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 11
N = int(sys.argv[2]) if len(sys.argv) > 2 else 27


def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def worker(n):
    for _ in range(2):
        fib(n)


def serial():
    t0 = time.perf_counter()
    for _ in range(4):
        fib(N)
    return time.perf_counter() - t0


def threaded():
    t0 = time.perf_counter()
    a = threading.Thread(target=worker, args=(N,))
    b = threading.Thread(target=worker, args=(N,))
    a.start(); b.start()
    a.join(); b.join()
    return time.perf_counter() - t0


def processes():
    t0 = time.perf_counter()
    ctx = multiprocessing.get_context("fork")
    a = ctx.Process(target=worker, args=(N,))
    b = ctx.Process(target=worker, args=(N,))
    a.start(); b.start()
    a.join(); b.join()
    assert a.exitcode == 0 and b.exitcode == 0
    return time.perf_counter() - t0


serial(); threaded(); processes()  # warm-up
s, t, pr = [], [], []
for r in range(REPEATS):
    s.append(serial())
    t.append(threaded())
    pr.append(processes())
ms, mt = statistics.median(s), statistics.median(t)
mp = statistics.median(pr)
print(f"W5 python n {N}")
print(f"W5 python serial {ms:.6f} s")
print(f"W5 python threaded {mt:.6f} s")
print(f"W5 python speedup {ms / mt:.4f} x")
print(f"W5 python processes {mp:.6f} s")
print(f"W5 python pspeedup {ms / mp:.4f} x")
