import datetime as dt

import numpy as np
import pandas as pd
import pytest

from trading_assets.core.prices import RAW_PRICE_COLUMNS, PriceDataError
from trading_assets.core.symbols import InvalidSymbolError
from trading_assets.sources.files import YAHOO_EXPORT_COLUMNS, FilesSource
from trading_assets.sources.sample import SAMPLE_SYMBOLS, SampleSource
from trading_assets_tests.conftest import SHARED_PRICES, shared_prices

START, END = dt.date(2024, 1, 2), dt.date(2024, 3, 28)


def test_long_parquet_returns_exact_shared_rows_for_inclusive_range():
    result = FilesSource(SHARED_PRICES).fetch(["AAPL", "BRK-B", "^VIX"], START, END)
    expected = shared_prices(["AAPL", "BRK-B", "^VIX"], "2024-01-02", "2024-03-28")
    got = result.prices
    assert list(got.columns) == list(RAW_PRICE_COLUMNS)
    assert result.failed == {}
    assert got["date"].min() == START and got["date"].max() == END  # both ends inclusive
    pd.testing.assert_frame_equal(
        got[["symbol", "date", "open", "high", "low", "close", "volume"]].reset_index(drop=True),
        expected.assign(date=pd.to_datetime(expected["date"]).dt.date).reset_index(drop=True),
    )
    assert got.loc[got.symbol == "^VIX", "volume"].isna().all()
    assert (got["source"] == "files").all()


def test_unknown_symbol_is_reported_not_fatal():
    result = FilesSource(SHARED_PRICES).fetch(["AAPL", "NOPE"], START, END)
    assert set(result.prices["symbol"]) == {"AAPL"}
    assert "NOPE" in result.failed and "no rows" in result.failed["NOPE"]


def test_invalid_symbol_never_reaches_the_file_filter():
    with pytest.raises(InvalidSymbolError):
        FilesSource(SHARED_PRICES).fetch(["AAPL", "x') OR 1=1 --"], START, END)


def test_long_csv_with_extra_columns_and_text_dates(tmp_path):
    frame = shared_prices(["MSFT"], "2024-01-02", "2024-01-31")
    frame["date"] = pd.to_datetime(frame["date"]).dt.strftime("%Y-%m-%d")
    frame["vendor_note"] = "x"  # unknown extra column: ignored
    path = tmp_path / "prices.csv"
    frame.to_csv(path, index=False)
    result = FilesSource(path).fetch(["MSFT"], dt.date(2024, 1, 10), dt.date(2024, 1, 12))
    assert result.prices["date"].tolist() == [dt.date(2024, 1, d) for d in (10, 11, 12)]
    assert "vendor_note" not in result.prices.columns


def test_missing_required_columns_is_a_named_error(tmp_path):
    path = tmp_path / "wrong.parquet"
    pd.DataFrame({"ticker": ["AAPL"], "day": ["2024-01-02"], "px": [1.0]}).to_parquet(path)
    with pytest.raises(
        PriceDataError, match=r"wrong.parquet: missing columns 'symbol', 'date', 'open'"
    ):
        FilesSource(path).fetch(["AAPL"], START, END)
    one = tmp_path / "one.csv"
    shared_prices(["AAPL"], "2024-01-02", "2024-01-05").drop(columns="close").to_csv(
        one, index=False
    )
    with pytest.raises(PriceDataError, match=r"one.csv: missing column 'close';"):
        FilesSource(one).fetch(["AAPL"], START, END)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_long_file_without_rows_says_no_rows(tmp_path, suffix):
    """A header-only CSV used to fail with Arrow's "Array type doesn't match type of values set:
    null vs string"; a row-less Parquet file likewise. Both name the file and the problem."""
    path = tmp_path / f"prices{suffix}"
    header = pd.DataFrame(
        {c: [] for c in ("symbol", "date", "open", "high", "low", "close", "volume")}
    )
    header.to_csv(path, index=False) if suffix == ".csv" else header.to_parquet(path)
    with pytest.raises(PriceDataError) as err:
        FilesSource(path).fetch(["AAPL"], START, END)
    assert str(err.value) == f"{path}: no rows"


def test_malformed_files_are_named_errors(tmp_path):
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(PriceDataError, match="unreadable price file"):
        FilesSource(junk).fetch(["AAPL"], START, END)
    text = tmp_path / "bad.csv"
    text.write_text("symbol,date,open,high,low,close,volume\nAAPL,2024-01-02,abc,1,1,1,1\n")
    with pytest.raises(PriceDataError, match="open"):
        FilesSource(text).fetch(["AAPL"], START, END)
    with pytest.raises(PriceDataError, match="not found"):
        FilesSource(tmp_path / "absent.parquet")
    other = tmp_path / "prices.json"
    other.write_text("{}")
    with pytest.raises(PriceDataError, match="unsupported"):
        FilesSource(other).fetch(["AAPL"], START, END)


def yahoo_export(frame: pd.DataFrame, adj_factor: float) -> pd.DataFrame:
    """Long shared rows as one symbol's CSV from Yahoo's Download button (Adj Close = Close x factor)."""
    return pd.DataFrame(
        {
            "Date": pd.to_datetime(frame["date"]).dt.strftime("%Y-%m-%d"),
            "Open": frame["open"],
            "High": frame["high"],
            "Low": frame["low"],
            "Close": frame["close"],
            "Adj Close": frame["close"] * adj_factor,
            "Volume": frame["volume"].astype("Int64"),
        }
    )


def test_directory_of_yahoo_export_csvs(tmp_path):
    real = shared_prices(["AAPL", "BRK-B"], "2024-01-02", "2024-01-31")
    for sym, g in real.groupby("symbol"):
        yahoo_export(g, 0.5).to_csv(tmp_path / f"{sym}.csv", index=False)
    (tmp_path / "README.csv").write_text("not,a,price,file\n")  # valid-looking name, bad content
    (tmp_path / "not a symbol.csv").write_text("x\n")  # never becomes a symbol
    (tmp_path / "^VIX.csv").write_text("Date,Open,High\n2024-01-02,1,2\n")  # missing columns
    (tmp_path / "GEV.csv").write_text(",".join(YAHOO_EXPORT_COLUMNS) + "\n")  # header only
    (tmp_path / "NVDA.csv").write_text("")  # not even a header
    result = FilesSource(tmp_path).fetch(
        ["AAPL", "BRK-B", "^VIX", "MSFT", "GEV", "NVDA"], START, dt.date(2024, 1, 5)
    )
    got = result.prices
    assert sorted(set(got["symbol"])) == ["AAPL", "BRK-B"]
    aapl = got[got.symbol == "AAPL"].reset_index(drop=True)
    src = real[real.symbol == "AAPL"].head(len(aapl)).reset_index(drop=True)
    # adjusted like auto_adjust=True: every price scaled by Adj Close / Close
    np.testing.assert_allclose(
        aapl[["open", "high", "low", "close"]], src[["open", "high", "low", "close"]] * 0.5
    )
    np.testing.assert_allclose(aapl["volume"], src["volume"])
    assert result.failed["^VIX"].startswith(
        f"{tmp_path / '^VIX.csv'}: missing columns 'Low', 'Close'"
    )
    assert "no file MSFT.csv" in result.failed["MSFT"]
    # A bad file fails its symbol alone, like a missing one; the reason names the file.
    assert result.failed["GEV"] == f"{tmp_path / 'GEV.csv'}: no rows"
    assert result.failed["NVDA"] == f"{tmp_path / 'NVDA.csv'}: empty file (no header, no rows)"


def test_sample_source_covers_its_universe():
    result = SampleSource().fetch(
        SAMPLE_SYMBOLS + ["SPY", "QQQ", "^VIX"], dt.date(2025, 7, 1), dt.date(2025, 7, 23)
    )
    assert result.failed == {}
    assert set(result.prices["symbol"]) == set(SAMPLE_SYMBOLS) | {"SPY", "QQQ", "^VIX"}
    assert (result.prices["source"] == "sample").all()


def test_empty_request_and_empty_range():
    src = FilesSource(SHARED_PRICES)
    assert src.fetch([], START, END).prices.empty
    result = src.fetch(["AAPL"], dt.date(2024, 1, 6), dt.date(2024, 1, 7))  # a weekend
    assert result.prices.empty and list(result.prices.columns) == list(RAW_PRICE_COLUMNS)
    assert "AAPL" in result.failed
