"""The consumer side of a connection, after the gate accepted the handshake.

- :mod:`secure_ws.consumer.secure` — ``SecureJsonWebsocketConsumer``, the one public base
  class (hooks, groups, cleanup); it owns one
  :class:`~secure_ws.consumer.state.ConnectionState` per connection (identity, limits,
  counters, timers, groups, audit handle);
- :mod:`secure_ws.consumer.loop` — its receive loop (``__call__``): client frames and
  channel-layer events kept apart, ``@event_handler``, the lazily made channel;
- :mod:`secure_ws.consumer.admission` — what a connection must pass to open, and
  ``auth.refresh``; :mod:`secure_ws.consumer.frames` — one client frame's way to its
  handler; :mod:`secure_ws.consumer.outbound` — replies and closes;
- :mod:`secure_ws.consumer.messages` — the message registry, ``message_handler`` and decoding;
  :mod:`secure_ws.consumer.schemas` — the envelope and the protocol's own payloads;
  :mod:`secure_ws.consumer.field_errors` — error details that never echo input;
- :mod:`secure_ws.consumer.permissions` — per-message permissions;
- :mod:`secure_ws.consumer.traffic`, :mod:`secure_ws.consumer.limits`,
  :mod:`secure_ws.consumer.timers`, :mod:`secure_ws.consumer.backpressure` — frame limits,
  rates, idle/lifetime timers, slow-reader handling;
- :mod:`secure_ws.consumer.fanout` — channel-layer group drops, counted and reported;
- :mod:`secure_ws.consumer.protocol` — the AsyncAPI document generated from the registry.
"""
