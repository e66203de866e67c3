"""Software-defined assets. Thin: read inputs, call trading_assets.core, attach metadata, return."""
