# W12: a thread hands 100 000 items to a task on the loop, each with
# loop.call_soon_threadsafe(q.put_nowait, i) into an asyncio.Queue the task
# awaits: items per second. Twin of bench/w12.lua. Run: python3
# bench/w12.py [repeats]
import asyncio
import statistics
import sys
import threading
import time

N = 100000
REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 5


async def consume(n):
    loop = asyncio.get_running_loop()
    q = asyncio.Queue()

    def produce():
        for i in range(1, n + 1):
            loop.call_soon_threadsafe(q.put_nowait, i)

    t = threading.Thread(target=produce)
    t.start()
    total = 0
    for _ in range(n):
        total += await q.get()
    t.join()
    return total


def one_round(n):
    t0 = time.perf_counter()
    total = asyncio.run(consume(n))
    dt = time.perf_counter() - t0
    assert total == n * (n + 1) // 2
    return n / dt / 1e6


one_round(N // 10)
r = [one_round(N) for _ in range(REPEATS)]
print("W12 python %.3f M/s" % statistics.median(r))
