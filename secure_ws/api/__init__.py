"""The DRF side: the HTTP endpoints that hand out credentials.

:mod:`~secure_ws.api.authentication` (refuses what the gate refuses),
:mod:`~secure_ws.api.serializers` (simplejwt serializers with the ``sid`` claim) and
:mod:`~secure_ws.api.throttling` (scoped throttles). The ticket view is
:class:`secure_ws.gate.tickets.WebSocketTicketView`.
"""
