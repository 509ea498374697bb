"""The package version (its own module, so any part of videoattn can import it without the package)."""

__version__ = "0.1.0"
