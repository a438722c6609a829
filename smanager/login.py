"""Logging in: ``login USER PASSWORD``, or ``challenge USER`` then ``auth PROOF``.

- Failures are counted per client address.  The first FREE_FAILURES cost
  nothing; after that each attempt must wait 1, 2, 4 ... seconds after the
  last failure, up to ``backoff_max``.  A success forgets the address's failures.
- An unknown user gets the same answer, after the same work, as a wrong
  password (a decoy verifier), so neither tells who exists.
- Checking a password is slow on purpose (PBKDF2): it runs in a worker thread,
  HASHING_AT_ONCE at a time, so a crowd of logins cannot stall the server.
  ``auth`` costs only a few hashes: the client did the slow part.
"""

import asyncio
import logging
import math
import os
import secrets
import time

from .errors import CommandError
from .passwords import ITERATIONS, decoy

log = logging.getLogger("smanager.login")
FREE_FAILURES = 3
FORGET_AFTER = 900.0  # seconds after its last failure an address starts afresh
MAX_ADDRESSES = 10_000  # addresses remembered at once, so memory stays bounded
HASHING_AT_ONCE = 2
NO_USERS = "no users are configured: every command is open to this connection"


class Backoff:
    """Failed logins per client address, and how long each must wait."""

    def __init__(self, max_delay, clock=time.monotonic):
        self.max_delay = max_delay
        self.clock = clock
        self.failures = {}  # address -> (count, time of the last); oldest first

    def wait(self, address):
        """Seconds before ``address`` may try again (0: now)."""
        entry = self.failures.get(address)
        if entry is None:
            return 0.0
        count, last = entry
        now = self.clock()
        if now - last >= FORGET_AFTER:
            del self.failures[address]
            return 0.0
        if count < FREE_FAILURES:
            return 0.0
        return max(0.0, last + min(self.max_delay, 2.0 ** (count - FREE_FAILURES)) - now)

    def failed(self, address):
        now = self.clock()
        count, _ = self.failures.pop(address, (0, now))
        self.failures[address] = (count + 1, now)
        while len(self.failures) > MAX_ADDRESSES:  # forget the longest quiet
            del self.failures[next(iter(self.failures))]

    def succeeded(self, address):
        self.failures.pop(address, None)


class Logins:
    def __init__(self, access, executor, backoff_max=60.0):
        self.access = access
        self.executor = executor
        self.backoff = Backoff(backoff_max)
        self._secret = os.urandom(32)  # keeps decoys the same for the server's life only
        self._hashing = None  # a Semaphore, made on the loop that uses it

    async def login(self, peer, name, password):
        user, verifier = self._start(peer, name)
        if self._hashing is None:
            self._hashing = asyncio.Semaphore(HASHING_AT_ONCE)
        async with self._hashing:
            right = await asyncio.get_running_loop().run_in_executor(
                self.executor, verifier.check_password, password)
        return self._outcome(peer, name, user if right else None)

    def challenge(self, peer, name):
        _, verifier = self._start(peer, name)
        nonce = secrets.token_urlsafe(18)
        peer.challenge = (name, nonce)
        return verifier.challenge(nonce)

    def auth(self, peer, proof):
        if not self.access.closed:
            raise CommandError(NO_USERS)
        if peer.challenge is None:
            raise CommandError("no challenge to answer: send 'challenge USER' first")
        (name, nonce), peer.challenge = peer.challenge, None  # one proof per nonce
        user, verifier = self._start(peer, name)
        right = user is not None and verifier.check_proof(name, nonce, proof)
        return self._outcome(peer, name, user if right else None)

    def _start(self, peer, name):
        """(the user or None, the verifier to check against), once the
        address may try; CommandError if it may not."""
        if not self.access.closed:
            raise CommandError(NO_USERS)
        wait = self.backoff.wait(peer.host)
        if wait > 0:
            raise CommandError(f"too many failed logins from {peer.host}; "
                               f"try again in {math.ceil(wait)} s")
        self.access.refresh()
        users = self.access.users
        user = users.get(name)
        if user is not None:
            return user, user.verifier
        iterations = next(iter(users.values())).verifier.iterations if users else ITERATIONS
        return None, decoy(self._secret, name, iterations)

    def _outcome(self, peer, name, user):
        if user is None:
            self.backoff.failed(peer.host)
            log.warning("%s: login as %r failed", peer.address, name[:64])
            raise CommandError("login failed")
        self.backoff.succeeded(peer.host)
        peer.login = name
        self.access.settle(peer)
        log.info("%s: logged in as %s (%s)", peer.address, name, peer.level)
        return f"logged in as {name} ({peer.level})"
