"""keel.monitoring."""
