"""The backtest engine: ``run_backtest`` (engine.py) over the long bars frame."""
