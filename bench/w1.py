# W1: start+join 1000 threads that run an empty function; µs per thread.
# Twin of bench/w1.lua. Run: python3 bench/w1.py [repeats]
#   W1     start all 1000, then join all 1000 (the usual Python shape)
#   W1seq  start one, join it, then the next (lifecycle latency, no overlap)
# Each figure is the median over `repeats` rounds, after one warm-up round.
import gc
import statistics
import sys
import threading
import time

N = 1000
REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 7


def empty():
    pass


def batch():
    t0 = time.perf_counter()
    threads = []
    for i in range(N):
        t = threading.Thread(target=empty)
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    return (time.perf_counter() - t0) / N * 1e6


def sequential():
    t0 = time.perf_counter()
    for _ in range(N):
        t = threading.Thread(target=empty)
        t.start()
        t.join()
    return (time.perf_counter() - t0) / N * 1e6


batch(); sequential()  # warm-up
b, s = [], []
for r in range(REPEATS):
    b.append(batch())
    gc.collect()
    s.append(sequential())
    gc.collect()
print(f"W1 python {statistics.median(b):.2f} us/thread")
print(f"W1seq python {statistics.median(s):.2f} us/thread")
