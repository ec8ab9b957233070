# W4: 2 threads each add 500 000 to one shared counter, each increment under
# one threading.Lock; total rate in million increments per second.
# Twin of bench/w4.lua. Run: python3 bench/w4.py [repeats] [n]
# The counter is a global int (conc: a conc.shared.dict); both threads use
# it directly. Start and join are counted.
# Each figure is the median over `repeats` rounds, after one warm-up round
# of n/10 per thread.
import statistics
import sys
import threading
import time

REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
N = int(sys.argv[2]) if len(sys.argv) > 2 else 500000

counter = 0


def add(lock, n):
    global counter
    for _ in range(n):
        with lock:
            counter += 1


def round_(n):
    global counter
    lock = threading.Lock()
    counter = 0
    t0 = time.perf_counter()
    a = threading.Thread(target=add, args=(lock, n))
    b = threading.Thread(target=add, args=(lock, n))
    a.start(); b.start()
    a.join(); b.join()
    dt = time.perf_counter() - t0
    assert counter == 2 * n, f"lost increments: {counter}"
    return 2 * n / dt / 1e6


round_(N // 10)  # warm-up
v = []
for r in range(REPEATS):
    v.append(round_(N))
print(f"W4 python {statistics.median(v):.3f} Mincr/s")
