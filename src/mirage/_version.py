"""mirage's version, read by pyproject.toml and recorded in every run's config.json."""

__version__ = "0.1.0"
