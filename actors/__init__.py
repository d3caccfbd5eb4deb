"""Built-in actor types, one module each. See `charger.catalog` for how types are found by name."""
