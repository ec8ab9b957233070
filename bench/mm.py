# MM: 20 000 item assignments d[i] = i on a Manager().dict() in the main
# process; us per assignment.
# Twin of bench/mm.lua. Run: python3 bench/mm.py [repeats] [n]
#   MM   d[i] = i for i = 1..n (a DictProxy: each one a round trip to the
#        manager's server process)
#   MMg  x = d[i], the reads (info)
#   MMc  the same assignments from a child process while the parent waits
#        for it (info: the dict is the same in every process)
# Each figure is the median over `repeats` rounds, after one warm-up round
# of n/10; every round starts from an empty dict and checks what it holds.
import multiprocessing
import statistics
import sys
import time

mp = multiprocessing.get_context("fork")

REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 7
N = int(sys.argv[2]) if len(sys.argv) > 2 else 20000


def assign(d, n):
    d.clear()
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        d[i] = i
    dt = (time.perf_counter() - t0) / n * 1e6
    assert len(d) == n
    return dt


def read(d, n):
    t0 = time.perf_counter()
    total = 0
    for i in range(1, n + 1):
        total = total + d[i]
    dt = (time.perf_counter() - t0) / n * 1e6
    assert total == n * (n + 1) // 2
    return dt


def child(d, n, took):
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        d[i] = i
    took.value = (time.perf_counter() - t0) / n * 1e6


def in_child(m, d, n):
    d.clear()
    took = m.Value("d", 0)
    p = mp.Process(target=child, args=(d, n, took))
    p.start()
    p.join()
    assert p.exitcode == 0 and len(d) == n and d[n] == n
    return took.value


if __name__ == "__main__":
    with mp.Manager() as m:
        d = m.dict()
        assign(d, N // 10); read(d, N // 10); in_child(m, d, N // 10)  # warm-up
        a, g, c = [], [], []
        for r in range(REPEATS):
            a.append(assign(d, N))
            g.append(read(d, N))
            c.append(in_child(m, d, N))
    print(f"MM python {statistics.median(a):.3f} us/op")
    print(f"MMg python {statistics.median(g):.3f} us/op")
    print(f"MMc python {statistics.median(c):.3f} us/op")
