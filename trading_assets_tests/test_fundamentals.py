"""Market-cap snapshot files: dated by an as_of column or the file name, one file or a directory."""

from __future__ import annotations

import datetime as dt
import shutil

import pandas as pd
import pytest

from trading_assets.core.fundamentals import (
    FUNDAMENTALS_COLUMNS,
    FundamentalsSnapshotError,
    combine_snapshots,
    market_cap_snapshot,
    read_fundamentals_snapshots,
    snapshot_summary,
)
from trading_assets.sources.sample import SAMPLE_FUNDAMENTALS

BUNDLED_AS_OF = dt.date(2025, 2, 1)


def write(path, text: str):
    path.write_text(text)
    return path


def test_bundled_snapshot_is_dated_by_its_file_name():
    frame = read_fundamentals_snapshots(SAMPLE_FUNDAMENTALS)
    assert list(frame.columns) == list(FUNDAMENTALS_COLUMNS)
    assert len(frame) == 503 and set(frame["as_of"]) == {BUNDLED_AS_OF}
    assert set(frame["source"]) == {"file"}
    # the real file has no market cap for three symbols: kept, as unknown
    assert sorted(frame.loc[frame["market_cap"].isna(), "symbol"]) == ["BF-B", "BRK-B", "MRO"]
    assert frame.set_index("symbol").loc["AAPL", "market_cap"] > 1e12


def test_as_of_column_holds_several_snapshots(tmp_path):
    path = write(
        tmp_path / "caps.csv",
        "symbol,market_cap,as_of\naapl,1e12,2020-01-02\nAAPL,2e12,2021-01-04\nMSFT,,2021-01-04\n",
    )
    frame = read_fundamentals_snapshots(path)
    assert frame["symbol"].tolist() == ["AAPL", "AAPL", "MSFT"]
    assert frame["as_of"].tolist() == [
        dt.date(2020, 1, 2),
        dt.date(2021, 1, 4),
        dt.date(2021, 1, 4),
    ]
    summary = snapshot_summary(frame)
    assert summary[["rows", "market_cap_known"]].values.tolist() == [[1, 1], [2, 1]]


def test_directory_of_dated_files(tmp_path):
    shutil.copy(SAMPLE_FUNDAMENTALS, tmp_path / SAMPLE_FUNDAMENTALS.name)
    write(tmp_path / "fundamentals_2025-03-03.csv", "symbol,market_cap\nAAPL,3.5e12\n")
    frame = read_fundamentals_snapshots(tmp_path)
    assert snapshot_summary(frame)["as_of"].tolist() == [BUNDLED_AS_OF, dt.date(2025, 3, 3)]
    assert len(frame) == 504


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("fundamentals_2025-01-02.csv", "", "not a readable CSV"),
        ("fundamentals_2025-01-02.csv", "symbol,market_cap\n", "has no rows"),
        ("fundamentals_2025-01-02.csv", "symbol,cap\nAAPL,1e12\n", "no 'market_cap' column"),
        ("caps.csv", "symbol,market_cap\nAAPL,1e12\n", "no as_of column and no YYYY-MM-DD date"),
        ("caps.csv", "symbol,market_cap,as_of\nAAPL,1e12,soon\n", "as_of must be a YYYY-MM-DD"),
        ("fundamentals_2025-01-02.csv", "symbol,market_cap\nAAPL,big\n", "positive number"),
        ("fundamentals_2025-01-02.csv", "symbol,market_cap\nAAPL,-5\n", "positive number"),
        ("fundamentals_2025-01-02.csv", "symbol,market_cap\nAAPL,1e12\nAAPL,2e12\n", "conflicting"),
    ],
)
def test_unusable_snapshot_file_is_a_named_error(tmp_path, name, text, message):
    path = write(tmp_path / name, text)
    with pytest.raises(FundamentalsSnapshotError, match=message) as info:
        read_fundamentals_snapshots(path)
    assert str(path) in str(info.value)


def test_missing_file_empty_directory_and_conflicts_across_files(tmp_path):
    with pytest.raises(FundamentalsSnapshotError, match="not found"):
        read_fundamentals_snapshots(tmp_path / "nope.csv")
    with pytest.raises(FundamentalsSnapshotError, match="holds no"):
        read_fundamentals_snapshots(tmp_path)
    write(tmp_path / "a.csv", "symbol,market_cap,as_of\nAAPL,1e12,2025-01-02\n")
    write(tmp_path / "fundamentals_2025-01-02.csv", "symbol,market_cap\nAAPL,2e12\n")
    with pytest.raises(FundamentalsSnapshotError, match="conflicting"):
        read_fundamentals_snapshots(tmp_path)


def test_fetched_snapshot_and_combination():
    fetched = market_cap_snapshot({"MSFT": 3e12, "AAPL": 3.4e12}, dt.date(2025, 2, 1))
    assert fetched["symbol"].tolist() == ["AAPL", "MSFT"] and set(fetched["source"]) == {"yahoo"}
    files = read_fundamentals_snapshots(SAMPLE_FUNDAMENTALS)
    both = combine_snapshots([files, fetched])
    assert len(both) == len(files)  # same (symbol, as_of): the file's row wins
    assert both.set_index("symbol").loc["AAPL", "source"] == "file"
    assert pd.Series(both.duplicated(["symbol", "as_of"])).sum() == 0
