"""The consumer side of a connection, after the gate accepted the handshake.

- :mod:`secure_ws.consumer.secure` — ``SecureJsonWebsocketConsumer``, the public base class;
- :mod:`secure_ws.consumer.audited` and :mod:`secure_ws.consumer.dispatch` — the layers under it
  (audit handle, frame admission, the reimplemented receive loop);
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
