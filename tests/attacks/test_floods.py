"""A flood of connections past the connection limit: each is refused in one line
(a "kill" sent with it never runs), the refusals are logged at most once a
second, and the connections already held are served throughout.  The figures
are printed: ``pytest -s tests/attacks/test_floods.py``."""

import asyncio
import logging
import time

from helpers import SEP, SEP_LINE, TIMEOUT, LineClient, running_server, until


async def test_a_flood_past_the_connection_limit_is_refused_and_service_goes_on(caplog):
    caplog.set_level(logging.WARNING, logger="smanager")
    limit, flood = 20, 200
    refusal = b"ERROR: too many connections (limit 20); try again later\n" + SEP_LINE
    async with running_server(max_connections=limit) as server:
        port = server.address[1]
        held = []
        try:
            held += await asyncio.gather(*(LineClient.connect(port) for _ in range(limit)))

            async def flooder(i):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                try:
                    if i % 2:
                        writer.write(b"kill\n")  # a refused connection must run nothing
                    try:
                        return i, await asyncio.wait_for(reader.read(), TIMEOUT)
                    except ConnectionResetError:  # our unread "kill" made its close a reset
                        return i, None
                finally:
                    writer.close()

            started = time.perf_counter()
            results = []
            for wave in range(0, flood, 50):  # as fast as the listen backlog (100) takes them
                results += await asyncio.gather(*(flooder(i) for i in range(wave, wave + 50)))
            elapsed = time.perf_counter() - started
            quiet = [got for i, got in results if i % 2 == 0]
            assert quiet == [refusal] * (flood // 2)
            talkers = [got for i, got in results if i % 2]
            assert all(got in (refusal, None) for got in talkers), talkers
            assert not server.manager.shutdown_requested.is_set()
            assert server.admission.count == limit and len(server.connections) == limit
            replies = await asyncio.gather(*(c.ask(f"testsvc add {i}") for i, c in enumerate(held)))
            assert replies == [f"{i + 1}\n" + SEP for i in range(limit)]
            await held.pop().close()
            assert await until(lambda: server.admission.count == limit - 1)
            held.append(await LineClient.connect(port))
            assert await held[-1].ask("testsvc add 40 2") == "42\n" + SEP
        finally:
            for client in held:
                await client.close()
    logged = [r for r in caplog.records if r.getMessage().startswith("refused ")]
    print(f"\n[flood] {flood} connections past a limit of {limit} in {elapsed:.2f} s: "
          f"{len(quiet)} got the one-line refusal, {talkers.count(refusal)} of {len(talkers)} "
          f"that sent 'kill' too ({talkers.count(None)} reset); {len(logged)} refusal log line(s)")
    assert 1 <= len(logged) <= elapsed + 2  # at most one a second, never one per refusal
