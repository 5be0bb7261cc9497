"""Identity after the handshake: the per-process connection registry and revocation.

- :mod:`secure_ws.sessions.registry` — which connections this process holds, by
  connection id, user id and login-session id;
- :mod:`secure_ws.sessions.pubsub` — one Redis pub/sub subscription per process that
  carries revocations (and per-user events) to every process, failing closed when it drops;
- :mod:`secure_ws.sessions.revocation` — what triggers a revocation (logout, deactivation,
  password change, the admin) and the revoked login sessions;
- :mod:`secure_ws.sessions.django_session` — a Django session as an identity, and its logout;
- :mod:`secure_ws.sessions.models` — the ``RevokedSession`` table.
"""
