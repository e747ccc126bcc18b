"""triage's revisions, one module each (``v0001``: the schema before migrations)."""
