# W3: 10 000 000 uncontended acquire+release pairs on one threading.Lock,
# in the main thread, nobody else touching it; ns per pair.
# Twin of bench/w3.lua. Run: python3 bench/w3.py [repeats] [n]
#   W3      lock.acquire(); lock.release()
#   W3with  with lock: pass
# Each figure is the median over `repeats` rounds, after one warm-up round
# of n/10 pairs.
import statistics
import sys
import threading
import time

REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
N = int(sys.argv[2]) if len(sys.argv) > 2 else 10000000

lock = threading.Lock()


def pairs_(n):
    t0 = time.perf_counter()
    for _ in range(n):
        lock.acquire()
        lock.release()
    return (time.perf_counter() - t0) / n * 1e9


def with_(n):
    t0 = time.perf_counter()
    for _ in range(n):
        with lock: pass
    return (time.perf_counter() - t0) / n * 1e9


pairs_(N // 10); with_(N // 10)  # warm-up
p, w = [], []
for r in range(REPEATS):
    p.append(pairs_(N))
    w.append(with_(N))
assert not lock.locked()
print(f"W3 python {statistics.median(p):.2f} ns/pair")
print(f"W3with python {statistics.median(w):.2f} ns/pair")
