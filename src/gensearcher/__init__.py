"""gensearcher: a research agent in front of an image generator.

The data flows one way: task -> research (`gensearcher.agent`) -> generation -> judging -> report.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
