"""Sources that add to a PubMed record (PMC front matter, Crossref, NIH iCite): each a client plus a pure
parser, and the pure merge policy.

May import :mod:`harvester.sources` (HTTP, pacing, retry) and :mod:`harvester.core`; never ``db`` or a job.
Parsers and the merge import neither ``requests`` nor ``sqlalchemy``.
"""
