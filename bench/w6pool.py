# W6pool1000, W6pool1: W6's square(x) over 100 000 integers, here with
# multiprocessing.Pool(2).map, chunksize 1000 and 1; tasks per second.
# Run: python3 bench/w6pool.py [repeats] [n]
# The Lua twin (bench/w6pool.lua) comes with conc's mp.Pool; until then
# bench/run shows "-" in its conc column. Python's Pool uses the fork
# context, as the other multiprocessing rows do. The pool is made, and its
# workers started, before the clock starts; the clock runs from map() until
# it returns the list. Each round checks the sum of the results. Each
# figure is the median over `repeats` rounds, after one warm-up round of
# n/10 tasks.
import multiprocessing
import statistics
import sys
import time

mp = multiprocessing.get_context("fork")
REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
N = int(sys.argv[2]) if len(sys.argv) > 2 else 100000


def square(x):
    return x * x


def one_round(pool, n, chunksize):
    xs = list(range(1, n + 1))
    t0 = time.perf_counter()
    result = pool.map(square, xs, chunksize)
    dt = time.perf_counter() - t0
    assert sum(result) == n * (n + 1) * (2 * n + 1) // 6, "W6pool: wrong results"
    return n / dt


if __name__ == "__main__":
    with mp.Pool(processes=2) as pool:
        pool.map(square, [1, 2, 3, 4], 1)  # its workers started
        for chunksize in (1000, 1):
            one_round(pool, N // 10, chunksize)  # warm-up
            r = statistics.median(one_round(pool, N, chunksize) for _ in range(REPEATS))
            print(f"W6pool{chunksize} python {r:.0f} tasks/s")
