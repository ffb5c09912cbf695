"""pubmed-harvester: the NCBI side (E-utilities and ID Converter clients, PubMed parser, pipelines, CLI)."""

__version__ = "0.1.0"
