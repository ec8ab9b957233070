# W2, W2b: items from one producer thread to one consumer thread through an
# unbounded queue.Queue(); messages per second.
# Twin of bench/w2.lua. Run: python3 bench/w2.py [repeats] [n] [nb]
#   W2   n  = 1 000 000 integers i
#   W2b  nb =   200 000 small dicts {"id": i, "name": "item"}
# The producer is the main thread, the consumer a Thread that gets n items
# and checks each one (x == i, item["id"] == i). The clock runs from just
# before the consumer's start() until it is joined, so its start is counted.
# The consumer hands the number of bad items back on a second queue, read
# after the clock stops. Each figure is the median over `repeats` rounds,
# after one warm-up round of n/10 items.
import queue
import statistics
import sys
import threading
import time

REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
N = int(sys.argv[2]) if len(sys.argv) > 2 else 1000000
NB = int(sys.argv[3]) if len(sys.argv) > 3 else 200000


def consume_ints(q, n, res):
    bad = 0
    for i in range(1, n + 1):
        if q.get() != i: bad = bad + 1

    res.put(bad)


def consume_tables(q, n, res):
    bad = 0
    for i in range(1, n + 1):
        item = q.get()
        if item["id"] != i: bad = bad + 1

    res.put(bad)


def round_ints(n):
    q, res = queue.Queue(), queue.Queue()
    c = threading.Thread(target=consume_ints, args=(q, n, res))
    t0 = time.perf_counter()
    c.start()
    for i in range(1, n + 1):
        q.put(i)

    c.join()
    dt = time.perf_counter() - t0
    assert res.get() == 0, "W2: items lost or out of order"
    return n / dt


def round_tables(n):
    q, res = queue.Queue(), queue.Queue()
    c = threading.Thread(target=consume_tables, args=(q, n, res))
    t0 = time.perf_counter()
    c.start()
    for i in range(1, n + 1):
        q.put({"id": i, "name": "item"})

    c.join()
    dt = time.perf_counter() - t0
    assert res.get() == 0, "W2b: items lost or out of order"
    return n / dt


round_ints(N // 10); round_tables(NB // 10)  # warm-up
a, b = [], []
for r in range(REPEATS):
    a.append(round_ints(N))
    b.append(round_tables(NB))
print(f"W2 python {statistics.median(a) / 1e6:.4f} Mmsg/s")
print(f"W2b python {statistics.median(b) / 1e6:.4f} Mmsg/s")
