# W9: 100 000 tasks each awaiting sleep(0), gathered: us per task. W9b:
# 10 000 tasks each sleeping 50 ms, gathered: ms of wall time over the
# 50 ms. Twin of bench/w9.lua. Run: python3 bench/w9.py [repeats]
import asyncio
import gc
import statistics
import sys
import time

REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 5


async def zero():
    await asyncio.sleep(0)


async def fifty():
    await asyncio.sleep(0.05)


def gathered(coro, n):
    async def main():
        await asyncio.gather(*[coro() for _ in range(n)])
    gc.collect()
    t0 = time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - t0


gathered(zero, 100000)
r = [gathered(zero, 100000) / 100000 * 1e6 for _ in range(REPEATS)]
print("W9 python %.3f us/task" % statistics.median(r))
gathered(fifty, 10000)
rb = [(gathered(fifty, 10000) - 0.05) * 1e3 for _ in range(REPEATS)]
print("W9b python %.3f ms" % statistics.median(rb))
