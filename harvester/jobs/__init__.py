"""The jobs: harvest by id, by search, nightly, bulk files (and their reader), iCite snapshots, and the
enrichment step they share. Each wires fetch -> parse -> reconcile -> store for one kind of run.

May import ``db``, ``enrich``, :mod:`harvester.sources` and :mod:`harvester.core`; never the CLI. One job
does not reach into another's internals: what two jobs share is a module of its own here.
"""
