"""Storage: SQLModel tables, the engine factory, migrations and keyword-only query functions."""
