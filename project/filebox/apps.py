from django.apps import AppConfig


class FileboxConfig(AppConfig):
    name = "project.filebox"
    label = "filebox"
    default_auto_field = "django.db.models.BigAutoField"
