import pandas as pd
import pytest

from trading_assets.core.symbols import InvalidSymbolError
from trading_assets.core.universe import (
    BENCHMARK_SECTOR,
    UniverseError,
    build_universe,
    parse_universe_spec,
    read_universe_csv,
    universe_changes,
)
from trading_assets.sources.sample import SAMPLE_SYMBOLS, sample_universe, sp500_universe


def test_default_lists_have_sectors_and_benchmarks_are_always_added():
    uni = build_universe(sp500_universe())
    assert len(uni) == 503 + 3
    assert uni["sector"].notna().all()
    bench = uni[uni["is_benchmark"]]
    assert bench["symbol"].tolist() == ["SPY", "QQQ", "^VIX"]
    assert (bench["sector"] == BENCHMARK_SECTOR).all()
    sample = build_universe(sample_universe())
    assert sample["symbol"].tolist() == SAMPLE_SYMBOLS + ["SPY", "QQQ", "^VIX"]
    assert sample.loc[~sample["is_benchmark"], "sector"].nunique() == 11  # all GICS sectors


def test_benchmark_already_listed_is_not_duplicated():
    uni = build_universe(pd.DataFrame({"symbol": ["spy", "AAPL"], "name": [None, "Apple"], "sector": [None, "IT"]}))
    assert uni["symbol"].tolist() == ["SPY", "AAPL", "QQQ", "^VIX"]
    assert uni.set_index("symbol").loc["SPY", "is_benchmark"]


def test_spec_comma_list_and_csv(tmp_path):
    assert parse_universe_spec(" AAPL, msft ,,")["symbol"].tolist() == ["AAPL", "msft"]
    path = tmp_path / "u.csv"
    path.write_text("Symbol,Sector,extra\nAAPL,Information Technology,1\nXOM,Energy,2\n")
    frame = read_universe_csv(path)
    assert frame["symbol"].tolist() == ["AAPL", "XOM"]
    assert frame["sector"].tolist() == ["Information Technology", "Energy"]
    assert build_universe(parse_universe_spec(str(path)))["symbol"].tolist()[:2] == ["AAPL", "XOM"]


def test_bad_universe_inputs_raise_named_errors(tmp_path):
    with pytest.raises(UniverseError, match="not found"):
        parse_universe_spec(str(tmp_path / "missing.csv"))
    bad = tmp_path / "bad.csv"
    bad.write_text("ticker\nAAPL\n")
    with pytest.raises(UniverseError, match="no 'symbol' column"):
        read_universe_csv(bad)
    with pytest.raises(UniverseError, match="empty"):
        parse_universe_spec(" , ")
    with pytest.raises(InvalidSymbolError, match="DROP"):
        build_universe(pd.DataFrame({"symbol": ["AAPL", "x'; DROP TABLE symbols; --"]}))
    with pytest.raises(UniverseError, match="no stocks"):
        build_universe(pd.DataFrame({"symbol": ["SPY"]}))


def test_universe_changes():
    assert universe_changes(None, ["A", "B"]) == (["A", "B"], [])
    assert universe_changes(["A", "B", "C"], ["B", "C", "D"]) == (["D"], ["A"])
