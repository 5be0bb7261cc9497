"""Connection audit, in the order a record travels.

``sink`` (the interface the gate and consumer call) -> ``writer`` (one append on the event
loop, a flusher thread) -> ``sinks`` (log line, metrics) and ``batcher`` (coalescing,
aggregation, bounds, loss counting; pure) -> ``database`` (writes, outages) -> ``storage``
(rows and SQL). ``records`` declares the record's fields once; ``models``, ``admin`` and
``dashboard`` are what operators read.
"""
