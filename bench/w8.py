# W8: start+join 200 processes that run an empty function; µs per process.
# Twin of bench/w8.lua. Run: python3 bench/w8.py [repeats]
#   W8     start all 200, then join all 200 (the usual Python shape)
#   W8seq  start one, join it, then the next (one process's whole lifecycle)
#   W8spawn the batch shape with the spawn start method, 50 processes: each
#          child is a fresh interpreter that imports this file as __mp_main__
# The first two use the "fork" start method, as conc's mp.Process does.
# Each figure is the median over `repeats` rounds (default 5: Python's take
# ~6 s each here), after one warm-up round of each batch shape.
import gc
import multiprocessing
import statistics
import sys
import time

N = 200
N_SPAWN = 50


def empty():
    pass


def batch(mp, n):
    t0 = time.perf_counter()
    procs = []
    for i in range(n):
        p = mp.Process(target=empty)
        p.start()
        procs.append(p)
    for p in procs:
        p.join()
    dt = (time.perf_counter() - t0) / n * 1e6
    for p in procs:
        assert p.exitcode == 0
    return dt


def sequential(mp):
    t0 = time.perf_counter()
    for _ in range(N):
        p = mp.Process(target=empty)
        p.start()
        p.join()
    return (time.perf_counter() - t0) / N * 1e6


def main():
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    fork = multiprocessing.get_context("fork")
    spawn = multiprocessing.get_context("spawn")
    batch(fork, N)  # warm-up
    batch(spawn, N_SPAWN)
    b, s, sp = [], [], []
    for r in range(repeats):
        b.append(batch(fork, N))
        gc.collect()
        s.append(sequential(fork))
        gc.collect()
        sp.append(batch(spawn, N_SPAWN))
        gc.collect()
    print(f"W8 python {statistics.median(b):.2f} us/process")
    print(f"W8seq python {statistics.median(s):.2f} us/process")
    print(f"W8spawn python {statistics.median(sp):.2f} us/process")


if __name__ == "__main__":  # spawn's children import this file again
    main()
