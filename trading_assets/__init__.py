"""trading_assets: a Dagster lineage graph for daily market data and trading analytics."""
