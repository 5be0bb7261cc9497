"""Connection audit: the sink interface, the buffered database writer, models and admin."""
