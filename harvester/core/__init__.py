"""The shared vocabulary of every layer: frozen records, ids, the error tree, settings, bounds, XML safety.

The bottom layer: modules here import nothing of the project outside ``harvester.core`` (the package's
``__version__`` aside), so any layer may import them.
"""
