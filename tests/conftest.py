"""The fixtures every folder of tests/ may use; what they are built on is in helpers.py."""

import atexit
import os
import shutil
import tempfile

import pytest
from helpers import (
    LineClient,
    ServerProcess,
    ServerThread,
    make_pki,
    make_users,
    need,
    running_server,
)


# Every server the tests start, in this process or a child, keeps its state (the
# monitor's samples, proc's records) in a directory of the run's own, never in the
# host's /var/lib/smanager or ~/.local/state: systemd's variable, which smanager honours.
os.environ["STATE_DIRECTORY"] = tempfile.mkdtemp(prefix="smanager-tests-state-")
atexit.register(shutil.rmtree, os.environ["STATE_DIRECTORY"], True)
# And tshell's help-index cache, never the user's ~/.cache.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="smanager-tests-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], True)


@pytest.fixture
def server_thread():
    servers = ServerThread()
    yield servers
    servers.close()


@pytest.fixture
def port(server_thread):
    """The port of a default test server running in a thread."""
    return server_thread.start()


@pytest.fixture
def address(port):
    """The same, as tshell takes it: HOST:PORT."""
    return f"127.0.0.1:{port}"


@pytest.fixture
async def server():
    async with running_server() as server:
        yield server


@pytest.fixture
async def client(server):
    client = await LineClient.connect(server.address[1])
    yield client
    await client.close()


@pytest.fixture
def server_process():
    started = []

    def start(*args, **kwargs):
        started.append(ServerProcess(*args, **kwargs).start())
        return started[-1]

    yield start
    for process in started:
        process.stop()


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1, and client certificates (see
    helpers.CERTIFICATES), made once for the whole run."""
    need("openssl")
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def users_file(tmp_path):
    """alice: admin, bob: operate, carol: read; each one's password is NAME-pw."""
    return make_users(tmp_path / "users", alice="admin", bob="operate", carol="read")
