# W8: start+join 200 processes that run an empty function; µs per process.
# Twin of bench/w8.lua. Run: python3 bench/w8.py [repeats]
#   W8     start all 200, then join all 200 (the usual Python shape)
#   W8seq  start one, join it, then the next (one process's whole lifecycle)
# conc's mp.Process forks; this twin uses the "fork" start method.
# Each figure is the median over `repeats` rounds (default 5: Python's take
# ~6 s each here), after one warm-up round of the batch shape.
import gc
import multiprocessing
import statistics
import sys
import time

mp = multiprocessing.get_context("fork")

N = 200
REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 5


def empty():
    pass


def batch():
    t0 = time.perf_counter()
    procs = []
    for i in range(N):
        p = mp.Process(target=empty)
        p.start()
        procs.append(p)
    for p in procs:
        p.join()
    dt = (time.perf_counter() - t0) / N * 1e6
    for p in procs:
        assert p.exitcode == 0
    return dt


def sequential():
    t0 = time.perf_counter()
    for _ in range(N):
        p = mp.Process(target=empty)
        p.start()
        p.join()
    return (time.perf_counter() - t0) / N * 1e6


batch()  # warm-up
b, s = [], []
for r in range(REPEATS):
    b.append(batch())
    gc.collect()
    s.append(sequential())
    gc.collect()
print(f"W8 python {statistics.median(b):.2f} us/process")
print(f"W8seq python {statistics.median(s):.2f} us/process")
