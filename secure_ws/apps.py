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
        import_module("secure_ws.sessions.revocation")
        import_module("secure_ws.sessions.django_session")
        import_module("secure_ws.checks_redis")
        import secure_ws.checks_extras  # noqa: F401  (extras and development-only modes)

        # Under daphne only: a 1001 close and an audit flush on SIGTERM (no-op elsewhere).
        from secure_ws.shutdown import install_daphne_shutdown

        install_daphne_shutdown()
        # Under daphne only: an oversized message gets a 1009 close, not a dropped socket.
        from secure_ws.compat import close_instead_of_drop

        close_instead_of_drop()
        # daphne's access log is a stream, not a logger: redact what it writes (no-op
        # without daphne).
        from secure_ws.logging import install_daphne_access_log_redaction

        install_daphne_access_log_redaction()
