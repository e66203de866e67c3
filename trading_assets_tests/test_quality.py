import datetime as dt

import pandas as pd

from trading_assets.core import quality
from trading_assets_tests.conftest import shared_prices


def bars(rows):
    return pd.DataFrame(rows, columns=["symbol", "date", "open", "high", "low", "close", "volume"])


D = [dt.date(2024, 1, d) for d in (2, 3, 4, 5, 8, 9)]


def test_duplicates_found_and_last_kept():
    f = bars([("A", D[0], 1, 2, 1, 1.5, 10), ("A", D[0], 1, 2, 1, 1.7, 11), ("B", D[0], 1, 2, 1, 1.5, 10)])
    assert len(quality.find_duplicates(f)) == 2
    kept = quality.drop_duplicates(f)
    assert len(kept) == 2 and kept.loc[kept.symbol == "A", "close"].item() == 1.7


def test_ohlc_rules_each_named():
    f = bars([
        ("OK", D[0], 10, 11, 9, 10.5, 100),
        ("LOWOPEN", D[0], 9, 11, 9.5, 10, 100),
        ("HIGHCLOSE", D[0], 10, 10.5, 9, 11, 100),
        ("NEG", D[0], -1, 11, -2, 10, 100),
        ("VOL", D[0], 10, 11, 9, 10, -5),
        ("NANVOL", D[0], 10, 11, 9, 10, float("nan")),  # indices have no volume: allowed
        ("NANPRICE", D[0], 10, float("nan"), 9, 10, 1),
        ("ROUNDING", D[0], 10.0, 11, 10.0 + 1e-12, 10.5, 1),  # adjusted-price float noise: allowed
    ])
    bad = quality.find_ohlc_violations(f).set_index("symbol")["violation"].to_dict()
    assert bad == {
        "LOWOPEN": "low>open", "HIGHCLOSE": "close>high", "NEG": "price<=0",
        "VOL": "volume<0", "NANPRICE": "price_nan",
    }


def test_real_sample_of_shared_data_has_the_known_vix_bad_open():
    real = shared_prices(["^VIX", "HUBB", "AAPL"])
    bad = quality.find_ohlc_violations(real)
    assert set(zip(bad.symbol, bad.date.astype(str), strict=True)) == {
        ("^VIX", "2002-09-11"), ("^VIX", "2004-10-26"), ("^VIX", "2004-11-08"), ("^VIX", "2006-02-08"),
        ("HUBB", "2021-05-05"),
    }


def test_missing_sessions_respect_listing_date_and_missing_symbols():
    f = bars([("A", d, 1, 1, 1, 1, 1) for d in D if d != D[3]] + [("LATE", d, 1, 1, 1, 1, 1) for d in D[4:]])
    missing = quality.find_missing_sessions(f, ["A", "LATE", "GONE"], D)
    got = sorted(zip(missing.symbol, missing.date, strict=True))
    assert got == [("A", D[3])] + [("GONE", d) for d in D]
    assert quality.find_missing_sessions(f, ["A"], []).empty
