"""Content-addressed blob store plus SQL catalog: the record of everything the platform makes."""
