"""The DRF side: authentication and throttling for the HTTP endpoints that hand out credentials."""
