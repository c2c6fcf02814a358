"""The edges and the wiring: platforms, delivery, router, settings, the CLI and the composition root."""
