"""Storage: SQLAlchemy models, engine set-up, idempotent upserts, reconciliation, runs, exports, reporting.

May import ``enrich``, :mod:`harvester.sources` and :mod:`harvester.core`; never a job or the CLI.
"""
