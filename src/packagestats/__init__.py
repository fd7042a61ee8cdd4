"""packagestats: a Kubernetes operator that tracks GitHub Packages download counts over time."""

__version__ = "0.1.0"
