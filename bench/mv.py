# MV: 200 000 increments of a shared multiprocessing.Value('i', 0) under its
# own lock, in one process, nobody else touching it; ns per increment.
# Twin of bench/mv.lua. Run: python3 bench/mv.py [repeats] [n]
#   MV     with v.get_lock(): v.value += 1
#   MVraw  the same on RawValue('i', 0), no lock: v.value += 1
# Each figure is the median over `repeats` rounds, after one warm-up round
# of n/10 increments.
import multiprocessing
import statistics
import sys
import time

mp = multiprocessing.get_context("fork")

REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 7
N = int(sys.argv[2]) if len(sys.argv) > 2 else 200000

v = mp.Value('i', 0)
raw = mp.RawValue('i', 0)


def locked(n):
    v.value = 0
    t0 = time.perf_counter()
    for _ in range(n):
        with v.get_lock(): v.value += 1
    dt = (time.perf_counter() - t0) / n * 1e9
    assert v.value == n
    return dt


def unlocked(n):
    raw.value = 0
    t0 = time.perf_counter()
    for _ in range(n):
        raw.value += 1
    dt = (time.perf_counter() - t0) / n * 1e9
    assert raw.value == n
    return dt


locked(N // 10); unlocked(N // 10)  # warm-up
l, u = [], []
for r in range(REPEATS):
    l.append(locked(N))
    u.append(unlocked(N))
print(f"MV python {statistics.median(l):.2f} ns/incr")
print(f"MVraw python {statistics.median(u):.2f} ns/incr")
