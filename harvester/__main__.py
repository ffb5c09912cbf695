"""``python -m harvester`` runs the ``harvest`` command."""

from harvester.cli import main

main()
