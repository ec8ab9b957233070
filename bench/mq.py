# MQ: 1 000 000 small integers from one process to another through
# multiprocessing.Queue(); million messages per second. Twin of bench/mq.lua.
# Run: python3 bench/mq.py [repeats]
import multiprocessing
import statistics
import sys
import time

mp = multiprocessing.get_context("fork")
N = 1000000
REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 3


def consume(q, back, n):
    bad = 0
    for i in range(n):
        if q.get() != i:
            bad += 1
    back.put(bad)


def one_round(n):
    q, back = mp.Queue(), mp.Queue()
    p = mp.Process(target=consume, args=(q, back, n))
    t0 = time.perf_counter()
    p.start()
    for i in range(n):
        q.put(i)
    p.join()
    dt = time.perf_counter() - t0
    assert back.get() == 0, "items arrived wrong"
    return n / dt / 1e6


if __name__ == "__main__":
    one_round(N // 10)
    print("MQ python %.3f M/s" % statistics.median(one_round(N) for _ in range(REPEATS)))
