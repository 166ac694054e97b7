"""Code shared by every service: server bootstrap, logging, errors, storage."""
