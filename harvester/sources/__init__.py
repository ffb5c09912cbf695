"""The NCBI side of fetching and parsing: HTTP with pacing and the one retry policy, the E-utilities and
PMC ID Converter clients, and the pure PubMed XML parser.

May import :mod:`harvester.core` only; never ``db``, ``enrich`` or a job. Parsers here import neither
``requests`` nor ``sqlalchemy``.
"""
