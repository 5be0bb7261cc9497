"""Identity after the handshake: the per-process connection registry and revocation delivery.

- :mod:`secure_ws.sessions.registry` — which connections this process holds, by
  connection id, user id and login-session id;
- :mod:`secure_ws.sessions.pubsub` — one Redis pub/sub subscription per process that
  carries revocations (and per-user events) to every process, failing closed when it drops.

What triggers a revocation (logout, deactivation, password change, the admin) lives in
:mod:`secure_ws.sessions.revocation`.
"""
