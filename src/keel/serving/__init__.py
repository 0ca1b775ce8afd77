"""keel.serving."""
