"""Passwords: how one is stored, checked, and proved without crossing the wire.

This is SCRAM's scheme (RFC 5802) with PBKDF2-HMAC-SHA-256, in a line-based form:

    SaltedPassword = PBKDF2(password, salt, iterations)
    ClientKey      = HMAC(SaltedPassword, "Client Key")
    StoredKey      = SHA-256(ClientKey)          <- the users file keeps these two
    ServerKey      = HMAC(SaltedPassword, "Server Key")

``login USER PASSWORD`` sends the password; the server derives StoredKey from
it and compares.  ``challenge USER [CLIENT_NONCE]`` answers ``pbkdf2-sha256
ITERATIONS SALT NONCE`` (NONCE begins with the client's), and ``auth PROOF``
sends

    AuthMessage = "USER,NONCE,ITERATIONS,SALT"
    Proof       = ClientKey XOR HMAC(StoredKey, AuthMessage)

from which the server recovers ClientKey and checks its hash; its reply ends
with HMAC(ServerKey, AuthMessage), which only a server that knows the
verifier can compute, so the client knows it reached the real server.  The
password never crosses the wire, a proof is good for one nonce only, and the
file cannot be used to log in (StoredKey is not ClientKey).
"""

import base64
import binascii
import functools
import hashlib
import hmac
import os
import re
import secrets
import unicodedata
from dataclasses import dataclass

SCHEME = "pbkdf2-sha256"
ITERATIONS = 600_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA-256
# A client refuses a challenge outside these: a fake server's cheap count would
# make its proof cheap to crack, and a huge one would hang the client.
MIN_ITERATIONS, MAX_ITERATIONS = 10_000, 10_000_000
SALT_BYTES = 16
NONCE = re.compile(r"[A-Za-z0-9_-]{8,64}")  # what token_urlsafe makes


def _b64(data):
    return base64.b64encode(data).decode("ascii")


def _unb64(text):
    return base64.b64decode(text.encode("ascii"), validate=True)


def _hmac(key, message):
    return hmac.digest(key, message, "sha256")


def salted_keys(password, salt, iterations):
    """(ClientKey, ServerKey) for a password (NFC-normalised: every keyboard
    types the same bytes)."""
    salted = hashlib.pbkdf2_hmac("sha256", unicodedata.normalize("NFC", password).encode(),
                                 salt, iterations)
    return _hmac(salted, b"Client Key"), _hmac(salted, b"Server Key")


def _auth_message(user, nonce, iterations, salt):
    return f"{user},{nonce},{iterations},{_b64(salt)}".encode()


def _xor(first, second):
    return bytes(a ^ b for a, b in zip(first, second))


@dataclass(frozen=True)
class Verifier:
    """What is stored for one user: enough to check a password or a proof, not to make one."""

    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes

    @classmethod
    def for_password(cls, password, iterations=ITERATIONS):
        salt = os.urandom(SALT_BYTES)
        client_key, server_key = salted_keys(password, salt, iterations)
        return cls(iterations, salt, hashlib.sha256(client_key).digest(), server_key)

    def encode(self):
        return ":".join([SCHEME, str(self.iterations), _b64(self.salt), _b64(self.stored_key),
                         _b64(self.server_key)])

    @classmethod
    def decode(cls, text):
        """ValueError if ``text`` is not what encode() writes."""
        scheme, iterations, salt, stored_key, server_key = text.split(":")
        if scheme != SCHEME or not iterations.isdigit() or \
                not MIN_ITERATIONS <= int(iterations) <= MAX_ITERATIONS:
            raise ValueError(f"not a {SCHEME} verifier of {MIN_ITERATIONS:,} to "
                             f"{MAX_ITERATIONS:,} iterations")
        try:
            verifier = cls(int(iterations), _unb64(salt), _unb64(stored_key), _unb64(server_key))
        except (binascii.Error, UnicodeError):
            raise ValueError("salt and keys must be base64") from None
        size = hashlib.sha256().digest_size
        if len(verifier.stored_key) != size or len(verifier.server_key) != size:
            raise ValueError("the keys are not SHA-256 digests")
        return verifier

    def challenge(self, nonce):
        """The text ``challenge`` answers."""
        return f"{SCHEME} {self.iterations} {_b64(self.salt)} {nonce}"

    def check_password(self, password):
        """True if ``password`` is the one stored (slow on purpose: PBKDF2)."""
        key, _ = salted_keys(password, self.salt, self.iterations)
        return hmac.compare_digest(hashlib.sha256(key).digest(), self.stored_key)

    def check_proof(self, user, nonce, proof):
        """True if ``proof`` (base64) shows the password for this user and nonce."""
        try:
            sent = _unb64(proof)
        except (binascii.Error, UnicodeError, ValueError):
            sent = b""
        signature = _hmac(self.stored_key, _auth_message(user, nonce, self.iterations, self.salt))
        key = _xor(sent, signature) if len(sent) == len(signature) else signature
        right = hmac.compare_digest(hashlib.sha256(key).digest(), self.stored_key)
        return right and len(sent) == len(signature)

    def server_signature(self, user, nonce):
        """What ``auth`` ends with: proof that this server holds the verifier."""
        return _b64(_hmac(self.server_key,
                          _auth_message(user, nonce, self.iterations, self.salt)))


def decoy(secret, user, counts=(ITERATIONS,)):
    """A verifier for a user who does not exist: the same salt and count every
    time (the count one of the real users' ``counts``), so ``challenge`` cannot
    tell who exists; and keys nobody can match."""
    digest = _hmac(secret, f"decoy:{user}".encode())
    counts = sorted(set(counts)) or [ITERATIONS]
    return Verifier(counts[digest[0] % len(counts)], digest[:SALT_BYTES],
                    _hmac(secret, f"stored:{user}".encode()),
                    _hmac(secret, f"server:{user}".encode()))


class ClientLogin:
    """The client's side of challenge and auth, for one login."""

    def __init__(self, user, password):
        self.user, self.password = user, password
        self.nonce = secrets.token_urlsafe(18)
        self._expected = None  # the server signature a real server will send

    def proof(self, challenge):
        """The PROOF for ``auth``, answering the server's challenge text.
        ValueError if it is not a challenge this client will answer."""
        try:
            scheme, iterations, salt, nonce = challenge.split()
            iterations, salt = int(iterations), _unb64(salt)
        except (ValueError, binascii.Error, UnicodeError):
            raise ValueError(f"not a challenge: {challenge[:80]!r}") from None
        if scheme != SCHEME or not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
            raise ValueError(f"will not answer a {scheme[:20]} challenge of {iterations} "
                             f"iterations ({MIN_ITERATIONS:,} to {MAX_ITERATIONS:,} expected)")
        if not nonce.startswith(self.nonce) or not NONCE.fullmatch(nonce[len(self.nonce):]):
            raise ValueError("the challenge does not carry this client's nonce")
        client_key, server_key = _remembered_keys(self.password, salt, iterations)
        message = _auth_message(self.user, nonce, iterations, salt)
        self._expected = _b64(_hmac(server_key, message))
        stored_key = hashlib.sha256(client_key).digest()
        return _b64(_xor(client_key, _hmac(stored_key, message)))

    def server_is_real(self, reply):
        """True if ``auth``'s reply ends with the signature only the real server can make."""
        sent = reply.rpartition(" ")[2]
        return self._expected is not None and hmac.compare_digest(sent, self._expected)


# A client asking many servers that share one users file derives the keys once.
# (Only clients: a server that remembered keys would keep every guess.)
_remembered_keys = functools.lru_cache(maxsize=16)(salted_keys)
