"""Small helpers shared across videoattn."""
