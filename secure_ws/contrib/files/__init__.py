"""File events: ``FileEventConsumer``, its schemas and ``publish_file_event`` (optional sub-app)."""
