"""Logging in: ``login USER PASSWORD``, or ``challenge USER`` then ``auth PROOF``.

- Failures are counted per client address (an IPv6 /64, which one machine
  may hold whole).  The first FREE_FAILURES cost nothing; after that each
  attempt must wait 1, 2, 4 ... seconds after the last failure, up to
  ``backoff_max``.  An attempt counts as failed from the moment it begins,
  so attempts in parallel, or cut short by Ctrl-C, are counted too; a
  success takes back only its own count (so logging in as one user does
  not buy more guesses at another).
- An unknown user gets the same answer, after the same work, as a wrong
  password (a decoy verifier), so neither tells who exists.
- Checking a password is slow on purpose (PBKDF2): it runs in a worker thread,
  HASHING_AT_ONCE at a time (a turn is held until the thread ends, even if
  the client stopped waiting), so a crowd of logins cannot stall the server.
  ``auth`` costs only a few hashes: the client did the slow part.
"""

import asyncio
import hashlib
import ipaddress
import logging
import math
import os
import secrets
import time

from ..wire.errors import CommandError
from .scram import NONCE, decoy

log = logging.getLogger("smanager.login")
FREE_FAILURES = 3
MAX_DOUBLINGS = 30  # 2 ** 30 s is past any cap; more would overflow a float
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
        address = _key(address)
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
        doublings = min(count - FREE_FAILURES, MAX_DOUBLINGS)
        return max(0.0, last + min(self.max_delay, 2.0 ** doublings) - now)

    def failed(self, address):
        """Count a failure; returns what succeeded() needs to take it back."""
        address, now = _key(address), self.clock()
        before = self.failures.pop(address, None)
        count = before[0] if before is not None else 0
        after = self.failures[address] = (min(count + 1, FREE_FAILURES + MAX_DOUBLINGS), now)
        while len(self.failures) > MAX_ADDRESSES:  # forget the longest quiet
            del self.failures[next(iter(self.failures))]
        return before, after

    def succeeded(self, address, counted):
        """Take back the failure ``failed()`` counted (``counted`` is what it
        returned) when the attempt began: as it was before, if nothing failed
        since; else one failure fewer."""
        address = _key(address)
        before, after = counted
        now = self.failures.get(address)
        if now is None:
            return
        if now == after:
            if before is None:
                del self.failures[address]
            else:
                self.failures[address] = before
        elif now[0] <= 1:
            del self.failures[address]
        else:
            self.failures[address] = (now[0] - 1, now[1])


def _key(address):
    """IPv4 addresses as they are; IPv6 ones by their /64."""
    if ":" not in address:
        return address
    try:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    except ValueError:
        return address


class Logins:
    def __init__(self, access, executor, backoff_max=60.0):
        self.access = access
        self.executor = executor
        self.backoff = Backoff(backoff_max)
        self._decoys = (None, None)  # (the users they were made for, their secret)
        self._refused, self._logged_at = 0, 0.0  # refusals, logged at most once a second
        self._hashing = None  # a Semaphore, made on the loop that uses it
        self._hashes = set()  # hashing tasks, referenced until they end

    async def login(self, peer, name, password):
        user, verifier = self._start(peer, name)
        # Counted as failed until it turns out right: the check takes a while,
        # and guesses sent meanwhile, or cut short by Ctrl-C, must count.
        counted = self.backoff.failed(peer.host)
        task = asyncio.get_running_loop().create_task(self._check(verifier, password))
        self._hashes.add(task)
        task.add_done_callback(self._hashes.discard)
        right = await asyncio.shield(task)  # Ctrl-C stops the wait, not the hashing
        return self._outcome(peer, name, user if right else None, counted)

    async def _check(self, verifier, password):
        if self._hashing is None:
            self._hashing = asyncio.Semaphore(HASHING_AT_ONCE)
        async with self._hashing:
            return await asyncio.get_running_loop().run_in_executor(
                self.executor, verifier.check_password, password)

    def challenge(self, peer, name, client_nonce=""):
        if client_nonce and not NONCE.fullmatch(client_nonce):
            raise CommandError("CLIENT_NONCE must be 8-64 letters, digits, _ or -")
        _, verifier = self._start(peer, name)
        nonce = client_nonce + secrets.token_urlsafe(18)
        peer.challenge = (name, nonce)
        return verifier.challenge(nonce)

    def auth(self, peer, proof):
        if not self.access.closed:
            raise CommandError(NO_USERS)
        if peer.challenge is None:
            raise CommandError("no challenge to answer: send 'challenge USER' first")
        (name, nonce), peer.challenge = peer.challenge, None  # one proof per nonce
        user, verifier = self._start(peer, name)
        right = verifier.check_proof(name, nonce, proof)  # a decoy's too: the same time
        reply = self._outcome(peer, name, user if right else None)
        return f"{reply}; server signature {verifier.server_signature(name, nonce)}"

    def _start(self, peer, name):
        """(the user or None, the verifier to check against), once the
        address may try; CommandError if it may not."""
        if not self.access.closed:
            raise CommandError(NO_USERS)
        wait = self.backoff.wait(peer.host)
        if wait > 0:
            self._log_refusal(peer.host)
            raise CommandError(f"too many failed logins from {peer.host}; "
                               f"try again in {math.ceil(wait)} s")
        self.access.refresh()
        users = self.access.users
        user = users.get(name)
        if user is not None:
            return user, user.verifier
        return None, decoy(self._decoy_secret(users), name,
                           [u.verifier.iterations for u in users.values()])

    def _log_refusal(self, host):
        self._refused += 1
        now = time.monotonic()
        if now - self._logged_at >= 1.0:  # a flood of guesses must not flood the log
            log.warning("refused %d login attempt(s) without checking them (latest from %s): "
                        "too many failures", self._refused, host)
            self._refused, self._logged_at = 0, now

    def _decoy_secret(self, users):
        """A secret drawn from the users' server keys, which only the server
        knows: a decoy stays the same across restarts (as a real user's salt
        does) and changes only with the users file."""
        made_for, secret = self._decoys
        if made_for is not users:
            keys = b"".join(name.encode() + b"\0" + user.verifier.server_key
                            for name, user in sorted(users.items()))
            secret = hashlib.sha256(b"smanager decoys\0" + keys).digest() if keys \
                else os.urandom(32)
            self._decoys = (users, secret)
        return secret

    def _outcome(self, peer, name, user, counted=None):
        """``counted``: the failure login() counted when it began (auth, which
        does not wait, counts only a real one)."""
        if user is None:
            if counted is None:
                self.backoff.failed(peer.host)
            log.warning("%s: login as %r failed", peer.address, name[:64])
            raise CommandError("login failed")
        if counted is not None:
            self.backoff.succeeded(peer.host, counted)
        peer.login = name
        self.access.settle(peer)
        log.info("%s: logged in as %s (%s)", peer.address, name, peer.level)
        return f"logged in as {name} ({peer.level})"
