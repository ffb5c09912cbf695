"""Storage: SQLAlchemy models, engine set-up, idempotent upserts, exports and reporting."""
