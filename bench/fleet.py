"""Fleet: does a list of hosts answer in the time of its slowest host, not the sum?

    python bench/fleet.py                 # 50 servers, 5 rounds
    python bench/fleet.py --hosts 200 --rounds 3

A child process runs N smanager servers (one event loop, 127.0.0.1, port 0),
each with a service whose one command waits that host's own delay: 50 ms for
the fastest, 300 ms for the slowest, the rest spread between.  This process
then times, each round:

- fleet:       ``fleet.run_everywhere`` on all N hosts (what tshell --hosts runs)
- slowest:     the same on the slowest host alone
- one by one:  a blocking Client per host, in turn (the reference: the sum)
- tshell:      ``tshell.py --hosts ... -c CMD`` and ``tshell.py SLOWEST -c CMD``
               as child processes, end to end (Python start-up included)

and prints medians and the ratios fleet/slowest (target: about 1) and
fleet/one-by-one.  A measurement, not a test: it always exits 0.
"""

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smanager.client import (
    Client,  # noqa: E402
    fleet,  # noqa: E402 - after the path is set
)

SERVICE = '''import asyncio
from smanager import SService


class Slowpoke(SService):
    """Answers after this host's delay"""

    async def cmd_wait(self):
        """Waits the host's delay, then says how long"""
        await asyncio.sleep(self.options["delay"])
        return self.options["delay"]
'''
COMMAND = "slowpoke wait"
FASTEST, SLOWEST = 0.05, 0.30


def delays(count):
    step = (SLOWEST - FASTEST) / max(count - 1, 1)
    return [round(FASTEST + i * step, 4) for i in range(count)]


async def serve(count, directory):
    """Child: start the servers, print their ports, stay until stdin closes."""
    from smanager.config import Config
    from smanager.server.server import Server
    servers = []
    for delay in delays(count):
        config = Config(host="127.0.0.1", port=0, no_default_services=True,
                        services=[directory], service={"slowpoke": {"delay": delay}},
                        log_level="WARNING")
        servers.append(Server(config))
        await servers[-1].start()
    print(json.dumps([server.address[1] for server in servers]), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await asyncio.gather(*(server.shutdown() for server in servers))


def timed(action):
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def one_by_one(addresses):
    for host, port in addresses:
        with Client(host, port) as client:
            assert client.call(COMMAND).ok
    return True


def everywhere(addresses):
    results = asyncio.run(fleet.run_everywhere(addresses, COMMAND))
    assert all(result.ok for result in results), [r.problem for r in results if not r.ok]
    return results


def tshell(*args):
    done = subprocess.run([sys.executable, str(ROOT / "tshell.py"), *args, "-c", COMMAND],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--directory", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.hosts, args.directory))
        return
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "slowpoke.py").write_text(SERVICE)
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--hosts", str(args.hosts),
             "--directory", directory], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, cwd=ROOT)
        try:
            ports = json.loads(child.stdout.readline())
            measure(ports, args.rounds)
        finally:
            child.stdin.close()
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()


def measure(ports, rounds):
    addresses = [("127.0.0.1", port) for port in ports]
    slowest = addresses[-1:]
    hosts = ",".join(f"{host}:{port}" for host, port in addresses)
    rows = {"fleet": [], "slowest": [], "one by one": [], "tshell fleet": [],
            "tshell slowest": []}
    print(f"{len(addresses)} hosts, delays {FASTEST * 1000:.0f}-{SLOWEST * 1000:.0f} ms "
          f"(sum {sum(delays(len(addresses))):.2f} s)")
    for round_number in range(1, rounds + 1):
        rows["fleet"].append(timed(lambda: everywhere(addresses))[0])
        rows["slowest"].append(timed(lambda: everywhere(slowest))[0])
        rows["one by one"].append(timed(lambda: one_by_one(addresses))[0])
        rows["tshell fleet"].append(timed(lambda: tshell("--hosts", hosts))[0])
        rows["tshell slowest"].append(timed(lambda: tshell(f"127.0.0.1:{ports[-1]}"))[0])
        print(f"round {round_number}: " + ", ".join(
            f"{name} {values[-1]:.3f} s" for name, values in rows.items()), flush=True)
    median = {name: statistics.median(values) for name, values in rows.items()}
    print("\nmedians: " + ", ".join(f"{name} {value:.3f} s" for name, value in median.items()))
    print(f"fleet / slowest host          {median['fleet'] / median['slowest']:.2f}x")
    print(f"fleet / one by one            {median['fleet'] / median['one by one']:.3f}x")
    print(f"tshell fleet / tshell slowest {median['tshell fleet'] / median['tshell slowest']:.2f}x")


if __name__ == "__main__":
    main()
