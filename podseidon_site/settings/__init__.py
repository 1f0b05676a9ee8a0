"""Django settings: ``base`` plus one module per environment (development, production, test)."""
