import pytest

from trading_assets.core.symbols import InvalidSymbolError, normalize_symbol, validate_symbols


@pytest.mark.parametrize("raw,expected", [
    ("AAPL", "AAPL"), (" brk-b ", "BRK-B"), ("^VIX", "^VIX"), ("BHP.AX", "BHP.AX"),
    ("7203.T", "7203.T"), ("ES=F", "ES=F"), ("EURUSD=X", "EURUSD=X"), ("RDS.A", "RDS.A"),
])
def test_valid_symbols_normalise(raw, expected):
    assert normalize_symbol(raw) == expected


@pytest.mark.parametrize("raw", [
    "", " ", "AAPL; DROP TABLE raw_prices", "A'B", 'A"B', "../etc/passwd", "AA PL", "AAPL/", "^^VIX",
    "A" * 21, "ABC.DEF.GHI.JKL", "%41APL", "AA\nPL", None, 42, "BRK--B", "-AAPL", "AAPL=",
])
def test_invalid_symbols_are_rejected(raw):
    with pytest.raises(InvalidSymbolError):
        normalize_symbol(raw)


def test_validate_symbols_names_every_bad_one_and_deduplicates():
    assert validate_symbols(["aapl", "AAPL", "MSFT"]) == ["AAPL", "MSFT"]
    with pytest.raises(InvalidSymbolError, match=r"2 invalid symbol\(s\).*'A B'.*'x;y'"):
        validate_symbols(["AAPL", "A B", "x;y"])
