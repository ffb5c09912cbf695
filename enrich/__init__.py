"""Sources that add to a PubMed record (PMC front matter, Crossref): each a client plus a pure parser."""
