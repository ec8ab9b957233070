# W10: TCP echo over 127.0.0.1 with asyncio streams: 10 concurrent
# connections, 100 000 round trips of 32 bytes in all (10 000 each); round
# trips per second. Twin of bench/w10.lua.
# Run: python3 bench/w10.py [repeats] [n]
# Server and clients run in one loop (asyncio.run). The server's handler
# echoes what it reads (read(1024), write, drain) until EOF; each client
# writes 32 bytes, drains, awaits readexactly(32), checks it, n/10 times.
# The server is listening and the 10 clients connected before the clock
# starts; the clock runs until the last client has its last echo. Each
# figure is the median over `repeats` rounds, after one warm-up round of
# n/10 round trips.
import asyncio
import statistics
import sys
import time

REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
N = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
CONNS = 10
MSG = b"x" * 31 + b"\n"


async def handle(reader, writer):
    while True:
        data = await reader.read(1024)
        if not data:
            break
        writer.write(data)
        await writer.drain()
    writer.close()


async def client(reader, writer, n):
    for _ in range(n):
        writer.write(MSG)
        await writer.drain()
        echo = await reader.readexactly(32)
        if echo != MSG:
            raise RuntimeError("W10: wrong echo")


async def one_round(n):
    async with await asyncio.start_server(handle, "127.0.0.1", 0) as srv:
        port = srv.sockets[0].getsockname()[1]
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(CONNS)]
        cs = [client(r, w, n // CONNS) for r, w in conns]
        t0 = time.perf_counter()
        await asyncio.gather(*cs)
        dt = time.perf_counter() - t0
        for _, w in conns:
            w.close()
            await w.wait_closed()
    return (n // CONNS * CONNS) / dt


asyncio.run(one_round(N // 10))  # warm-up
print(f"W10 python {statistics.median(asyncio.run(one_round(N)) for _ in range(REPEATS)):.0f} trips/s")
