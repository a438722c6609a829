"""The asyncio adapter: the only part of the server that touches sockets and transports.

server       listening, signals, and shutdown in ordered phases
connection   one client: bytes -> framer -> pipeline; what its bytes mean
pipeline     a connection's lines, answered in order, one worker task each
flow         backpressure both ways
limits       connection caps and the time-outs sweep
tls          TLS for the TCP listener
unix_socket  listening on a Unix socket, safely
systemd      sd_notify (ready, reloading, stopping, watchdog) and sockets systemd passes
"""
