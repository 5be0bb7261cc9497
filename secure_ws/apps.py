"""AppConfig: registers the system checks and the signal receivers."""

from __future__ import annotations

from importlib import import_module

from django.apps import AppConfig


class SecureWSConfig(AppConfig):
    """The ``secure_ws`` Django app."""

    name = "secure_ws"
    verbose_name = "Secure WebSockets"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Importing these modules registers checks and signal receivers.
        import_module("secure_ws.checks")
        import_module("secure_ws.checks_redis")
        import_module("secure_ws.revocation")
        import_module("secure_ws.django_session")
        # Under daphne only: a 1001 close and an audit flush on SIGTERM (no-op elsewhere).
        from secure_ws.shutdown import install_daphne_shutdown

        install_daphne_shutdown()
        # daphne's access log is a stream, not a logger: redact what it writes (no-op
        # without daphne).
        from secure_ws.logging import install_daphne_access_log_redaction

        install_daphne_access_log_redaction()
