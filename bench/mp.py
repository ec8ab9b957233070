# MP: a small integer's round trip through a multiprocessing.Pipe() between
# two processes; µs per round trip. Twin of bench/mp.lua.
# Run: python3 bench/mp.py [repeats]
import multiprocessing
import statistics
import sys
import time

mp = multiprocessing.get_context("fork")
N = 20000
REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 3


def echo(a, b):
    a.close()
    while True:
        x = b.recv()
        if x is None:
            break
        b.send(x)


def one_round(a, n):
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        a.send(i)
        assert a.recv() == i
    return (time.perf_counter() - t0) / n * 1e6


if __name__ == "__main__":
    a, b = mp.Pipe()
    p = mp.Process(target=echo, args=(a, b))
    p.start()
    b.close()
    one_round(a, N // 10)
    r = statistics.median(one_round(a, N) for _ in range(REPEATS))
    a.send(None)
    p.join()
    print("MP python %.2f us/round trip" % r)
