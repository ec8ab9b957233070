# W11: a token handed back and forth between two threads through two
# Events, 100 000 round trips; µs per hand-off (a round trip is two).
# Twin of bench/w11.lua; the C baseline (mutex + condvar) is
# bench/pingpong_pthread.c. Run: python3 bench/w11.py [repeats] [n]
#   main thread (A): e1.set(); e2.wait(); e2.clear()    n times
#   the other (B):   e1.wait(); e1.clear(); e2.set()    n times
# B is started and one round trip is made before the clock starts, so
# thread start is not counted. Each figure is the median over `repeats`
# rounds, after one warm-up round.
import statistics
import sys
import threading
import time

REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
N = int(sys.argv[2]) if len(sys.argv) > 2 else 100000


def pong(e1, e2, n):
    for _ in range(n):
        e1.wait(); e1.clear(); e2.set()


def round_(n):
    e1, e2 = threading.Event(), threading.Event()
    b = threading.Thread(target=pong, args=(e1, e2, n + 1))
    b.start()
    e1.set(); e2.wait(); e2.clear()  # the untimed first round trip
    t0 = time.perf_counter()
    for _ in range(n):
        e1.set(); e2.wait(); e2.clear()
    dt = time.perf_counter() - t0
    b.join()
    return dt / (2 * n) * 1e6


round_(N // 10)  # warm-up
h = []
for r in range(REPEATS):
    h.append(round_(N))
print(f"W11 python {statistics.median(h):.3f} us/handoff")
