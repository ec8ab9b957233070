# T1: a 1000-element nested table (100 entries, each a dict of 10 fields:
# 4 ints, 3 strings, 3 floats) sent to a thread and back; µs per round trip.
# Twin of bench/t1.lua. Run: python3 bench/t1.py [repeats]
#
#   T1        pickle.loads(pickle.dumps(d)) twice per round trip: what a
#             multiprocessing queue does to get it there and back (threads
#             in Python share the dict and copy nothing).
#   T1thr     start a thread with the dict as its argument (passed by
#             reference), the thread reads one field, join; µs per thread.
#   T1thrbase the same with no argument.
#   T1thrrt   2 x (T1thr - T1thrbase): about 0, since nothing is copied;
#             printed for symmetry with conc, not compared.
# Each figure is the median over `repeats` rounds, after one warm-up round.
import gc
import pickle
import statistics
import sys
import threading
import time

REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 7
COPIES = 2000  # round trips per round for T1
THREADS = 300  # threads per round for T1thr / T1thrbase


def make_table():
    t = {}
    for i in range(1, 101):
        t[i] = {
            "id": i, "qty": i * 3, "count": i * 1000 + 7, "rank": 100 - i,
            "name": f"item-{i}", "tag": f"tag-{i % 7}", "label": "x" * (i % 20),
            "price": i * 1.25, "x": i / 3, "y": -i * 0.5,
        }
    return t


data = make_table()
dumps, loads = pickle.dumps, pickle.loads


def roundtrips():
    t0 = time.perf_counter()
    for _ in range(COPIES):
        r = loads(dumps(loads(dumps(data))))  # there and back
    dt = time.perf_counter() - t0
    assert r[100]["name"] == "item-100" and r[50]["price"] == 62.5
    return dt / COPIES * 1e6


def touch(t):
    return t[100]["id"]


def empty():
    pass


def threads(with_table):
    t0 = time.perf_counter()
    for _ in range(THREADS):
        if with_table:
            th = threading.Thread(target=touch, args=(data,))
        else:
            th = threading.Thread(target=empty)
        th.start()
        th.join()
    return (time.perf_counter() - t0) / THREADS * 1e6


roundtrips(); threads(True); threads(False)  # warm-up
rt, thr, base, delta = [], [], [], []
for r in range(REPEATS):
    rt.append(roundtrips())
    gc.collect()
    thr.append(threads(True))
    base.append(threads(False))
    delta.append(2 * (thr[-1] - base[-1]))
    gc.collect()
print(f"T1 python {statistics.median(rt):.2f} us/roundtrip")
print(f"T1thr python {statistics.median(thr):.2f} us/thread")
print(f"T1thrbase python {statistics.median(base):.2f} us/thread")
print(f"T1thrrt python {statistics.median(delta):.2f} us/roundtrip")
