# W6: square(x) over 100 000 integers with ThreadPoolExecutor.map on 2
# workers, the whole iterator consumed; tasks per second.
# Twin of bench/w6.lua (Pool.map's rows: bench/w6pool.py).
# Run: python3 bench/w6.py [repeats] [n]
# The executor is made, and both its workers started, before the clock
# starts; the clock runs from map() until its last result is taken, so the
# submits and the map iterator are both counted. Each round checks the sum
# of the results. Each figure is the median over `repeats` rounds, after
# one warm-up round of n/10 tasks.
import concurrent.futures as futures
import statistics
import sys
import time

REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
N = int(sys.argv[2]) if len(sys.argv) > 2 else 100000


def square(x):
    return x * x


ex = futures.ThreadPoolExecutor(max_workers=2)
for _ in ex.map(square, [1, 2, 3, 4]): pass  # both workers started


def one_round(n):
    xs = list(range(1, n + 1))
    sum_ = 0
    t0 = time.perf_counter()
    for r in ex.map(square, xs): sum_ = sum_ + r
    dt = time.perf_counter() - t0
    assert sum_ == n * (n + 1) * (2 * n + 1) // 6, "W6: wrong results"
    return n / dt


one_round(N // 10)  # warm-up
print(f"W6 python {statistics.median(one_round(N) for _ in range(REPEATS)):.0f} tasks/s")
ex.shutdown(wait=True)
