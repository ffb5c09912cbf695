"""pubmed-harvester: the NCBI side and the two ends of the stack.

The project's layers, each importing only what is below it (import-linter holds this in CI; see
pyproject's ``[tool.importlinter]``)::

    harvester/cli.py     the command line
    harvester/jobs/      by id, search, nightly, ingest (+ its reader), iCite snapshots, enrichment
    db/                  models, store, reconciliation, runs, reporting, exports
    enrich/              PMC, Crossref, iCite: client + pure parser each; the merge policy
    harvester/sources/   HTTP, pacing, retry; E-utilities and ID Converter clients; the PubMed parser
    harvester/core/      records, ids, errors, settings, XML safety, text helpers: nothing of the project
"""

__version__ = "0.1.0"
