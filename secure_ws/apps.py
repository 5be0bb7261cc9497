"""AppConfig: registers the system checks and the signal receivers."""

from __future__ import annotations

from django.apps import AppConfig


class SecureWSConfig(AppConfig):
    """The ``secure_ws`` Django app."""

    name = "secure_ws"
    verbose_name = "Secure WebSockets"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, once the app registry is ready (these modules use models): importing
        # them registers the system checks and the signal receivers.
        import secure_ws.checks
        import secure_ws.sessions.django_session
        import secure_ws.sessions.revocation  # noqa: F401
        from secure_ws.compat import close_instead_of_drop
        from secure_ws.logging import install_daphne_access_log_redaction
        from secure_ws.shutdown import install_daphne_shutdown

        # Under daphne only: a 1001 close and an audit flush on SIGTERM (no-op elsewhere).
        install_daphne_shutdown()
        # Under daphne only: an oversized message gets a 1009 close, not a dropped socket.
        close_instead_of_drop()
        # daphne's access log is a stream, not a logger: redact what it writes (no-op
        # without daphne).
        install_daphne_access_log_redaction()
