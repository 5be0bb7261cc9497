from django.apps import AppConfig


class FileboxConfig(AppConfig):
    name = "project.filebox"
    label = "filebox"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Membership changes call secure_ws.contrib.files.consumer.folder_access_changed.
        from project.filebox import receivers  # noqa: F401
