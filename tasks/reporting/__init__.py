"""What the pipeline shows people: Prefect artifacts (tables, markdown, links, progress)."""
