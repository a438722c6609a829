"""Readers of Linux /proc for the bundled network collectors: interfaces and TCP states.

The rules are procfs's: a plain dict ``{metric: number}`` per call, no sleeping,
``root="/proc"`` for fixtures, ``NotAvailable`` with a one-line message when a
file is missing, and the ``*_COUNTERS`` frozensets name the cumulative fields.
Both read the network namespace of the process reading them.

- ``network()``: /proc/net/dev, per interface: rx_ and tx_ bytes, packets,
  errors and dropped, all counters (``eth0.rx_bytes``).  lo is kept: local
  traffic (a database on 127.0.0.1) is often what an admin is after, and it
  is one more series, not noise in the others.  An interface's name keeps
  letters, digits, ``_`` and ``-``: eth0.100 (a VLAN) becomes ``eth0_100``.
  Old kernels glue the first number to the colon (``eth0:1234``); names may
  hold colons themselves, so a name ends at its line's last colon.
- ``tcp_states()``: sockets per state over /proc/net/tcp and tcp6, every state
  present (0 when none), named in lower case (``established``, ``listen``,
  ``time_wait``) like the other metrics.  No tcp6 (IPv6 off) counts as none.
  From the real /proc they come by netlink (sockdiag.py: what ss does, under
  half the kernel time of formatting the two files); from the files when
  netlink is refused, and always for a fixture root.
"""

from . import sockdiag
from .procfs import NotAvailable, name_part, read_text

NETWORK_FIELDS = {"rx_bytes": 0, "rx_packets": 1, "rx_errors": 2, "rx_dropped": 3,
                  "tx_bytes": 8, "tx_packets": 9, "tx_errors": 10, "tx_dropped": 11}
NETWORK_COUNTERS = frozenset(NETWORK_FIELDS)
TCP_STATES_COUNTERS = frozenset()
# include/net/tcp_states.h
TCP_STATES = {1: "established", 2: "syn_sent", 3: "syn_recv", 4: "fin_wait1", 5: "fin_wait2",
              6: "time_wait", 7: "close", 8: "close_wait", 9: "last_ack", 10: "listen",
              11: "closing", 12: "new_syn_recv"}


def network(root="/proc"):
    reading = {}
    for line in read_text("net", root, "net", "dev").splitlines():
        name, colon, numbers = line.rpartition(":")
        if not colon:
            continue  # the two header lines
        values = numbers.split()
        interface = name_part(name.strip())
        for field, index in NETWORK_FIELDS.items():
            reading[f"{interface}.{field}"] = int(values[index])
    return reading


def tcp_states(root="/proc"):
    counts = dict.fromkeys(TCP_STATES.values(), 0)
    if root == "/proc":
        try:
            for number, count in sockdiag.tcp_state_counts().items():
                if number in TCP_STATES:
                    counts[TCP_STATES[number]] += count
            return counts
        except OSError:
            pass  # a sandbox without netlink: the files say the same, more slowly
    for table in ("tcp", "tcp6"):
        try:
            text = read_text("tcp", root, "net", table)
        except NotAvailable:
            if table == "tcp":
                raise
            continue
        for line in text.splitlines()[1:]:
            fields = line.split(None, 4)
            state = TCP_STATES.get(int(fields[3], 16)) if len(fields) > 4 else None
            if state:
                counts[state] += 1
    return counts
