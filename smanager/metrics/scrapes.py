"""Readers of the status text servers give about themselves: Redis ``INFO``, memcached
``stats``, nginx ``stub_status`` and Apache ``server-status?auto``.

Rules:
- Each reader takes the decoded text a server sent and returns ``(values, counters)``:
  ``{name: float}`` and the frozenset of those names whose values only grow (the monitor
  stores their rate per second).  Nothing here does I/O.
- Only numbers are kept; words (versions, "ok", "master", dates) are skipped.
- Names are the server's own where it has them (``connected_clients``, ``cmd_get``);
  a line of ``key=value`` pairs gives one value per pair, joined by a dot (Redis
  ``db0:keys=1,expires=0`` -> ``db0.keys``, ``db0.expires``); Apache's ``Key Words`` and
  ``CamelCase`` become snake_case (``Total Accesses`` -> ``total_accesses``, ``BusyWorkers``
  -> ``busy_workers``), and its scoreboard is counted per state (``scoreboard.waiting``...,
  every state present, 0 when none).
- A text holding none of the values a reader expects (an error reply, ``-NOAUTH``, an HTML
  404 page) raises ValueError with a one-line reason, so a collector records an error
  instead of silently collecting nothing.
"""

import re

NUMBER = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\Z")

REDIS_COUNTERS = frozenset("""
    total_connections_received total_commands_processed total_net_input_bytes
    total_net_output_bytes total_net_repl_input_bytes total_net_repl_output_bytes
    rejected_connections sync_full sync_partial_ok sync_partial_err expired_keys
    expired_time_cap_reached_count evicted_keys evicted_clients keyspace_hits keyspace_misses
    total_forks total_error_replies total_reads_processed total_writes_processed
    io_threaded_reads_processed io_threaded_writes_processed unexpected_error_replies
    dump_payload_sanitizations total_eviction_exceeded_time total_active_defrag_time
    acl_access_denied_auth acl_access_denied_cmd acl_access_denied_key acl_access_denied_channel
    used_cpu_sys used_cpu_user used_cpu_sys_children used_cpu_user_children
    used_cpu_sys_main_thread used_cpu_user_main_thread""".split())
# per-command (cmdstat_get:calls=...) and per-error (errorstat_ERR:count=...) tallies
REDIS_TALLIES = frozenset({"calls", "usec", "rejected_calls", "failed_calls", "count"})

MEMCACHED_COUNTERS = frozenset("""
    cmd_get cmd_set cmd_flush cmd_touch cmd_meta get_hits get_misses get_expired get_flushed
    delete_misses delete_hits incr_misses incr_hits decr_misses decr_hits cas_misses cas_hits
    cas_badval touch_hits touch_misses store_too_large store_no_memory auth_cmds auth_errors
    bytes_read bytes_written total_connections rejected_connections listen_disabled_num
    conn_yields evictions reclaimed expired_unfetched evicted_unfetched evicted_active
    total_items rusage_user rusage_system slabs_moved crawler_reclaimed direct_reclaims
    lru_bumps_dropped moves_to_cold moves_to_warm moves_within_lru malloc_fails""".split())

NGINX_COUNTERS = frozenset({"accepts", "handled", "requests"})

APACHE_COUNTERS = frozenset({"total_accesses", "total_kbytes", "total_duration", "cpu_user",
                             "cpu_system", "cpu_children_user", "cpu_children_system"})
APACHE_SCOREBOARD = {"_": "waiting", "S": "starting", "R": "reading", "W": "sending",
                     "K": "keepalive", "D": "dns", "C": "closing", "L": "logging",
                     "G": "finishing", "I": "idle_cleanup", ".": "open"}


def keep_number(values, name, text):
    """Put TEXT in VALUES under NAME if it is a number."""
    if NUMBER.match(text.strip()):
        values[name] = float(text)


def result(values, counters, what, text):
    if not values:
        raise ValueError(f"no {what} values in a reply starting {text.strip()[:40]!r}")
    return values, frozenset(counters & values.keys())


def redis_info(text):
    """(values, counters) from the reply to Redis's ``INFO``."""
    values = {}
    for line in text.splitlines():
        key, colon, value = line.strip().partition(":")
        if not colon or key.startswith("#"):
            continue
        if "=" in value:
            for pair in value.split(","):
                sub_key, _, number = pair.partition("=")
                keep_number(values, f"{key}.{sub_key}", number)
        else:
            keep_number(values, key, value)
    tallies = {name for name in values
               if name.startswith(("cmdstat_", "errorstat_"))
               and name.rpartition(".")[2] in REDIS_TALLIES}
    return result(values, REDIS_COUNTERS | tallies, "Redis INFO", text)


def memcached_stats(text):
    """(values, counters) from the reply to memcached's ``stats``, up to ``END``."""
    values = {}
    for line in text.splitlines():
        words = line.split()
        if words == ["END"]:
            break
        if len(words) == 3 and words[0] == "STAT":
            keep_number(values, words[1], words[2])
    return result(values, MEMCACHED_COUNTERS, "memcached stats", text)


def nginx_stub_status(text):
    """(values, counters) from nginx's ``stub_status`` page::

        Active connections: 291
        server accepts handled requests
         16630948 16630948 31070465
        Reading: 6 Writing: 179 Waiting: 106
    """
    values = {}
    active = re.search(r"Active connections:\s*(\d+)", text)
    if active:
        values["active"] = float(active[1])
    totals = re.search(r"server accepts handled requests[^\n]*\n\s*(\d+)\s+(\d+)\s+(\d+)", text)
    if totals:
        values.update(zip(("accepts", "handled", "requests"), map(float, totals.groups())))
    for state in ("Reading", "Writing", "Waiting"):
        found = re.search(rf"{state}:\s*(\d+)", text)
        if found:
            values[state.lower()] = float(found[1])
    return result(values, NGINX_COUNTERS, "nginx stub_status", text)


def snake_case(key):
    """``Total Accesses`` -> ``total_accesses``, ``CPUUser`` -> ``cpu_user``; a lone
    lower-case letter stays with its word (``kBytes`` -> ``kbytes``)."""
    split = re.sub(r"(?<=[a-z0-9]{2})(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", key.strip())
    return re.sub(r"\W+", "_", split).lower()


def apache_status(text):
    """(values, counters) from Apache's ``server-status?auto``."""
    values = {}
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if not colon:
            continue
        if key == "Scoreboard":
            board = value.strip()
            values.update((f"scoreboard.{state}", float(board.count(letter)))
                          for letter, state in APACHE_SCOREBOARD.items())
        else:
            keep_number(values, snake_case(key), value)
    return result(values, APACHE_COUNTERS, "Apache server-status", text)
