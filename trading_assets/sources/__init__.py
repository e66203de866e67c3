"""Where daily prices come from: Yahoo Finance (yfinance), files, or the bundled sample."""
