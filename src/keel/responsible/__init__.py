"""keel.responsible."""
