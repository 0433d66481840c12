"""Shared machinery of the Python client and worker (``gearman_gateway.client`` and ``.worker``).

Layers, each one idea, so that the blocking and the asyncio APIs share every protocol decision:

* ``links``: one server connection's protocol state (decoder, bytes to send, back-off), no socket;
* ``session``: what a set of links does with their events, sans-IO: ``client_session`` submits tasks,
  matches replies, fails over between servers; ``worker_session`` registers functions, grabs, sleeps
  and wakes, reports results;
* ``blocking`` and ``aio``: the only modules doing I/O. They connect links, move bytes between sockets and
  a session, and wait (selectors or asyncio) until the session says the caller's condition holds.

The binary packets themselves are parsed and built by ``protocols.binary.codec``, as in the server.
"""
