# W7: 20 000 submit + result round trips on a ThreadPoolExecutor with 2
# workers, one at a time: submit a task, wait for its result, then submit
# the next; us per task. Twin of bench/w7.lua.
# Run: python3 bench/w7.py [repeats] [n]
# The task is square(x). Each round makes a fresh executor and one untimed
# round trip first, so the worker's start is not counted, and checks every
# result. Each figure is the median over `repeats` rounds, after one
# warm-up round of n/10 tasks.
import concurrent.futures as futures
import statistics
import sys
import time

REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
N = int(sys.argv[2]) if len(sys.argv) > 2 else 20000


def square(x):
    return x * x


def one_round(n):
    with futures.ThreadPoolExecutor(max_workers=2) as ex:
        assert ex.submit(square, 0).result() == 0  # the untimed first round trip
        bad = 0
        t0 = time.perf_counter()
        for i in range(1, n + 1):
            if ex.submit(square, i).result() != i * i: bad = bad + 1

        dt = time.perf_counter() - t0
        assert bad == 0, "W7: wrong results"
        return dt / n * 1e6


one_round(N // 10)  # warm-up
print(f"W7 python {statistics.median(one_round(N) for _ in range(REPEATS)):.3f} us/task")
