"""The read API (trading_assets/api) through FastAPI's TestClient over real DuckDB files: the graph
materialised on the bundled sample (every endpoint against the table read independently with
duckdb), hand-made files for the edge cases (empty tables, NaN and infinities, no file yet), a
writer in another process holding the file's lock, and the bearer token. The real
``trading-assets api`` process over HTTP is in test_api_process.py, the bucket in test_api_prod.py.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from trading_assets.api.app import create_app
from trading_assets.api.routes import INDICATOR_SELECTABLE, MAX_PAGE_ROWS
from trading_assets.api.store import DuckDBDirectStore, DuckDBSnapshotStore
from trading_assets.core.backtest.result import STRATEGIES
from trading_assets.resources import ReportStoreResource
from trading_assets_tests.test_assets_portfolio import EXAMPLE_TRADES, run_daily, run_portfolio

START, END = "2024-01-02", "2025-07-23"  # the example trades fall in 2025


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> tuple[Path, Path]:
    """The daily graph and every strategy (with the example trades) into a DuckDB file."""
    root = tmp_path_factory.mktemp("api")
    db, reports = root / "api.duckdb", root / "reports"
    assert run_daily(db, reports, start=START, end=END).success
    assert run_portfolio(db, reports, trades=EXAMPLE_TRADES).success
    return db, reports


def client(db: Path, reports: Path | None = None, **kw) -> TestClient:
    store = kw.pop("store", None) or DuckDBSnapshotStore(db, snapshot_dir=db.parent / "snapshots")
    report_store = ReportStoreResource(directory=str(reports or db.parent / "reports"))
    return TestClient(create_app(store, report_store, **kw))


@pytest.fixture(scope="module")
def api(stored) -> TestClient:
    return client(*stored)


def table(db: Path, sql: str, params=()) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, list(params)).df()


def frame(answer: dict) -> pd.DataFrame:
    return pd.DataFrame(answer["data"])


def iso(column: pd.Series) -> list[str]:
    return [d.date().isoformat() for d in pd.to_datetime(column)]


def every_page(api: TestClient, url: str) -> tuple[list[dict], int]:
    rows, pages = [], 0
    while url:
        answer = api.get(url)
        assert answer.status_code == 200, answer.text
        rows += answer.json()["data"]
        url = answer.json()["next"]
        pages += 1
    return rows, pages


# --- every endpoint against the stored tables -----------------------------------------------------


def test_health_names_the_file_and_each_assets_latest_session(api, stored):
    db, _ = stored
    answer = api.get("/health")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "ok"
    assert body["storage"]["kind"] == "duckdb" and body["storage"]["location"] == str(db)
    for name in ("raw_prices", "indicators", "market_environment", "watchlist", "backtest_equity"):
        latest = table(db, f"SELECT count(*) AS n, max(date) AS d FROM {name}").iloc[0]
        assert body["assets"][name] == {"rows": latest["n"], "latest": iso([latest["d"]])[0]}
    assert body["assets"]["raw_prices"]["latest"] == END
    assert body["assets"]["symbols"]["rows"] == len(table(db, "SELECT * FROM symbols"))
    assert body["assets"]["price_revisions"]["rows"] == 0


def test_symbols_are_the_stored_universe(api, stored):
    expected = table(stored[0], "SELECT * FROM symbols ORDER BY symbol")
    got = frame(api.get("/symbols").json())
    assert got["symbol"].tolist() == expected["symbol"].tolist()
    assert got["is_benchmark"].tolist() == expected["is_benchmark"].tolist()
    assert {"SPY", "QQQ", "^VIX", "BRK-B"} <= set(got["symbol"])


def test_prices_of_a_symbol_over_a_range(api, stored):
    db, _ = stored
    got = api.get("/prices/AAPL", params={"start": "2025-03-03", "end": "2025-03-31"}).json()
    expected = table(
        db,
        "SELECT * FROM raw_prices WHERE symbol = 'AAPL' AND date BETWEEN ? AND ? ORDER BY date",
        ["2025-03-03", "2025-03-31"],
    )
    assert got["next"] is None
    rows = frame(got)
    assert rows["date"].tolist() == iso(expected["date"])
    assert rows["close"].tolist() == expected["close"].tolist()
    assert rows["volume"].tolist() == expected["volume"].tolist()
    assert len(rows) == 21  # March 2025's sessions
    # lower case is normalised as everywhere; ^VIX travels URL-encoded, its missing volume as null
    assert api.get("/prices/aapl?start=2025-03-03&end=2025-03-31").json() == got
    vix = api.get("/prices/%5EVIX", params={"start": END}).json()["data"]
    assert [(r["symbol"], r["date"], r["volume"]) for r in vix] == [("^VIX", END, None)]


def test_indicators_with_chosen_columns(api, stored):
    db, _ = stored
    got = api.get(
        "/indicators/MSFT",
        params={"columns": "rsi_14,sma_200,hh_ll_20", "start": "2024-01-02", "end": "2024-12-31"},
    ).json()
    rows = frame(got)
    assert list(rows.columns) == ["symbol", "date", "rsi_14", "sma_200", "hh_ll_20"]
    expected = table(
        db,
        "SELECT date, rsi_14, sma_200 FROM indicators WHERE symbol = 'MSFT' "
        "AND date <= '2024-12-31' ORDER BY date",
    )
    assert rows["date"].tolist() == iso(expected["date"])
    # warm-up sessions have no sma_200: stored null, answered null
    assert rows["sma_200"].isna().sum() == expected["sma_200"].isna().sum() > 0
    assert rows["rsi_14"].fillna(-1).tolist() == expected["rsi_14"].fillna(-1).tolist()
    everything = api.get("/indicators/MSFT", params={"limit": 1}).json()["data"][0]
    assert list(everything) == ["symbol", "date", *INDICATOR_SELECTABLE]


def test_environment_latest_and_by_date(api, stored):
    db, _ = stored
    latest = api.get("/environment").json()
    assert latest["next"] is None and len(latest["data"]) == 1
    row = latest["data"][0]
    expected = table(db, "SELECT * FROM market_environment WHERE date = ?", [END]).iloc[0]
    assert row["date"] == END
    assert (row["environment"], row["base_size"], row["heat_limit"]) == (
        expected["environment"],
        expected["base_size"],
        expected["heat_limit"],
    )
    assert row["environment"] in {"A", "B", "C", "D"}
    on = api.get("/environment", params={"date": "2025-04-08"}).json()["data"][0]
    expected = table(db, "SELECT environment FROM market_environment WHERE date = '2025-04-08'")
    assert on["environment"] == expected["environment"].iloc[0]


def test_watchlist_latest_and_by_date(api, stored):
    db, _ = stored
    sessions = table(db, "SELECT date, count(*) AS n FROM watchlist GROUP BY date ORDER BY date")
    assert len(sessions) > 0
    latest = frame(api.get("/watchlist").json())
    assert set(latest["date"]) == {iso(sessions["date"])[-1]}
    assert len(latest) == sessions["n"].iloc[-1]
    day = iso(sessions["date"])[len(sessions) // 2]
    got = frame(api.get("/watchlist", params={"date": day}).json())
    expected = table(db, "SELECT symbol FROM watchlist WHERE date = ? ORDER BY symbol", [day])
    assert got["symbol"].tolist() == expected["symbol"].tolist()
    # a session nothing passed (a Saturday here): an empty list, not an error
    assert api.get("/watchlist", params={"date": "2025-07-19"}).json() == {
        "data": [],
        "next": None,
    }


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_backtest_trades_and_equity(api, stored, strategy):
    db, _ = stored
    trades, _ = every_page(api, f"/backtests/{strategy}/trades?limit={MAX_PAGE_ROWS}")
    expected = table(
        db, "SELECT * FROM backtest_trades WHERE strategy = ? ORDER BY trade_id", [strategy]
    )
    assert [t["trade_id"] for t in trades] == expected["trade_id"].tolist()
    assert [t["pnl"] for t in trades] == expected["pnl"].tolist()
    # an open trade: no exit, answered as nulls
    open_rows = [t for t in trades if t["exit_date"] is None]
    assert len(open_rows) == expected["exit_date"].isna().sum()
    assert all(t["exit_price"] is None for t in open_rows)
    equity = frame(api.get(f"/backtests/{strategy}/equity", params={"start": "2025-01-02"}).json())
    stored_equity = table(
        db,
        "SELECT date, equity FROM backtest_equity WHERE strategy = ? AND date >= '2025-01-02' "
        "ORDER BY date",
        [strategy],
    )
    assert equity["equity"].tolist() == stored_equity["equity"].tolist()
    assert equity["date"].tolist() == iso(stored_equity["date"])


def test_performance_rows(api, stored):
    got = frame(api.get("/performance").json())
    expected = table(stored[0], "SELECT * FROM performance_metrics ORDER BY strategy")
    assert got["strategy"].tolist() == expected["strategy"].tolist()
    assert {"SPY buy-and-hold", "user", *STRATEGIES} == set(got["strategy"])
    for name, value in zip(expected["strategy"], expected["sharpe"], strict=True):
        answered = got.set_index("strategy").loc[name, "sharpe"]
        assert (answered is None and math.isnan(value)) or answered == pytest.approx(value)


def test_open_positions_are_marked_at_the_latest_close(api, stored):
    """The journal's own mark (the engine's and positions.py's pnl of an open row) is the reference."""
    db, _ = stored
    got = frame(api.get("/journal/positions").json())
    journal = table(
        db, "SELECT * FROM trade_journal WHERE exit_date IS NULL ORDER BY strategy, trade_id"
    )
    assert len(got) == len(journal) > 0
    assert "user" in set(got["strategy"])  # the example trades leave lots open
    assert got["unrealised_pnl"].to_numpy() == pytest.approx(journal["pnl"].to_numpy(), rel=1e-9)
    assert set(got["last_close_date"]) == {END}
    closes = table(db, "SELECT symbol, close FROM raw_prices WHERE date = ?", [END])
    assert (
        got["last_close"].tolist()
        == got["symbol"].map(closes.set_index("symbol")["close"]).tolist()
    )


def test_realised_pnl_per_exit_session(api, stored):
    db, _ = stored
    rows, _ = every_page(api, "/journal/pnl?start=2025-01-02&end=2025-06-30&limit=50")
    got = pd.DataFrame(rows)
    journal = table(
        db,
        "SELECT * FROM trade_journal WHERE exit_date BETWEEN '2025-01-02' AND '2025-06-30'",
    )
    expected = journal.groupby(["exit_date", "strategy"])["pnl"].agg(["sum", "count"]).reset_index()
    assert got["date"].tolist() == iso(expected["exit_date"])
    assert got["trades"].tolist() == expected["count"].tolist()
    assert got["realised_pnl"].to_numpy() == pytest.approx(expected["sum"].to_numpy(), rel=1e-12)


def test_reports_are_the_written_html(api, stored):
    _, reports = stored
    for name in ("stdev", "user"):
        answer = api.get(f"/reports/{name}")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/html")
        assert answer.text == (reports / f"{name}.html").read_text()


def test_openapi_schema_lists_every_endpoint(api):
    paths = set(api.get("/openapi.json").json()["paths"])
    assert {
        "/health", "/symbols", "/prices/{symbol}", "/indicators/{symbol}", "/environment",
        "/watchlist", "/backtests/{strategy}/trades", "/backtests/{strategy}/equity",
        "/performance", "/journal/positions", "/journal/pnl", "/reports/{strategy}",
    } == paths  # fmt: skip
    assert api.get("/docs").status_code == 200


# --- pages ----------------------------------------------------------------------------------------


def test_pages_follow_next_links_to_every_row(api, stored):
    expected = table(stored[0], "SELECT date FROM raw_prices WHERE symbol = 'JPM' ORDER BY date")
    rows, pages = every_page(api, "/prices/JPM?limit=100")
    assert [r["date"] for r in rows] == iso(expected["date"])
    assert pages == math.ceil(len(expected) / 100) + (len(expected) % 100 == 0)
    past = api.get("/prices/JPM", params={"offset": len(expected)}).json()
    assert past == {"data": [], "next": None}  # past the end of a known symbol: empty, not 404


@pytest.mark.parametrize(
    "params", [{"limit": MAX_PAGE_ROWS + 1}, {"limit": 0}, {"offset": -1}, {"limit": "ten"}]
)
def test_a_page_past_the_limit_is_refused_not_clamped(api, params):
    answer = api.get("/prices/AAPL", params=params)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"][-1] in {"limit", "offset"}


# --- bad input: 4xx before any query ----------------------------------------------------------------


class CountingStore(DuckDBSnapshotStore):
    """The real snapshot store, counting the queries it is asked."""

    queries = 0

    def query(self, sql, params=(), tables=()):
        CountingStore.queries += 1
        return super().query(sql, params, tables)


@pytest.fixture
def counted(stored, tmp_path) -> TestClient:
    db, reports = stored
    CountingStore.queries = 0
    return client(db, reports, store=CountingStore(db, snapshot_dir=tmp_path / "snap"))


@pytest.mark.parametrize(
    "url",
    [
        "/prices/AAPL;DROP TABLE raw_prices",
        "/prices/AAPL'--",
        "/prices/..%2F..%2Fetc",
        "/prices/A%20B",
        "/prices/ABCDEFGHIJKLMNOPQRSTUV",
        "/indicators/%22AAPL%22",
    ],
)
def test_an_invalid_symbol_is_422_without_a_query(counted, url):
    answer = counted.get(url)
    assert answer.status_code in (404, 422), answer.text
    if answer.status_code == 404:  # a path the router cannot even match ("/" inside)
        assert answer.json()["detail"] == "Not Found"
    else:
        assert "invalid symbol" in answer.json()["detail"]
    assert CountingStore.queries == 0


@pytest.mark.parametrize(
    ("url", "detail"),
    [
        ("/prices/AAPL?start=2025-02-30", "is not a date"),
        ("/prices/AAPL?start=2025-1-2", "pattern"),
        ("/prices/AAPL?end=yesterday", "pattern"),
        ("/prices/AAPL?start=2025-03-01&end=2025-02-01", "is after end"),
        ("/environment?date=1735689600", "pattern"),
        ("/journal/pnl?start=2025-13-01", "is not a date"),
        ("/indicators/AAPL?columns=rsi_14,symbol;drop", "unknown column"),
        ("/indicators/AAPL?columns=open", "unknown column"),
        ("/indicators/AAPL?columns=,", "unknown column"),
    ],
)
def test_bad_dates_and_columns_are_422_without_a_query(counted, url, detail):
    answer = counted.get(url)
    assert answer.status_code == 422, answer.text
    assert detail in str(answer.json()["detail"])
    assert CountingStore.queries == 0


@pytest.mark.parametrize(
    "url",
    ["/backtests/user/trades", "/backtests/STDEV/equity", "/backtests/x'y/trades", "/reports/spy"],
)
def test_an_unknown_strategy_is_404_without_a_query(counted, url):
    answer = counted.get(url)
    assert answer.status_code == 404, answer.text
    assert "unknown strategy" in answer.json()["detail"]
    assert CountingStore.queries == 0


def test_an_unknown_symbol_or_session_is_404(api):
    for url, detail in [
        ("/prices/ZZZZ", "no prices stored for ZZZZ"),
        ("/indicators/BHP.AX", "no indicators stored for BHP.AX"),
        ("/environment?date=2025-07-19", "no market environment stored for 2025-07-19"),
    ]:
        answer = api.get(url)
        assert (answer.status_code, answer.json()["detail"]) == (404, detail)


# --- edge cases on hand-made files ---------------------------------------------------------------


def test_no_file_yet_is_503_then_answers_once_it_exists(tmp_path):
    db = tmp_path / "later.duckdb"
    api = client(db)
    for url in ("/health", "/symbols", "/prices/AAPL"):
        answer = api.get(url)
        assert answer.status_code == 503, answer.text
        assert (
            "no DuckDB file" in answer.json()["detail"]
            and "trading-assets main" in (answer.json()["detail"])
        )
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE symbols AS SELECT 'AAPL' AS symbol, 'Apple' AS name, "
                    "'IT' AS sector, false AS is_benchmark")  # fmt: skip
    assert api.get("/symbols").json()["data"][0]["symbol"] == "AAPL"
    health = api.get("/health").json()
    assert health["assets"]["symbols"] == {"rows": 1, "latest": None}
    assert health["assets"]["raw_prices"] is None  # not materialised yet
    answer = api.get("/prices/AAPL")
    assert (answer.status_code, answer.json()["detail"]) == (
        404,
        "raw_prices has not been materialised yet",
    )
    assert api.get("/reports/stdev").status_code == 404


def test_empty_tables(tmp_path):
    db = tmp_path / "empty.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE symbols (symbol VARCHAR, name VARCHAR, sector VARCHAR, "
                    "is_benchmark BOOLEAN)")  # fmt: skip
        con.execute("CREATE TABLE raw_prices (symbol VARCHAR, date DATE, open DOUBLE, "
                    "high DOUBLE, low DOUBLE, close DOUBLE, volume DOUBLE, source VARCHAR, "
                    "quarantine VARCHAR)")  # fmt: skip
        con.execute("CREATE TABLE market_environment (date DATE, environment VARCHAR)")
        con.execute("CREATE TABLE watchlist (symbol VARCHAR, date DATE)")
        con.execute("CREATE TABLE trade_journal AS SELECT * FROM (SELECT 'x' AS strategy, "
                    "1 AS trade_id, 'AAPL' AS symbol, 'long' AS side, NULL AS setup, "
                    "DATE '2025-01-02' AS entry_date, 1.0 AS entry_price, "
                    "DATE '2025-01-03' AS exit_date, 2.0 AS pnl, 1 AS shares, 0.0 AS fees) "
                    "WHERE false")  # fmt: skip
        con.execute("CREATE TABLE backtest_equity (strategy VARCHAR, date DATE, equity DOUBLE)")
    api = client(db)
    assert api.get("/symbols").json() == {"data": [], "next": None}
    assert api.get("/watchlist").json() == {"data": [], "next": None}
    assert api.get("/journal/pnl").json() == {"data": [], "next": None}
    assert api.get("/journal/positions").json() == {"data": [], "next": None}
    assert api.get("/prices/AAPL").status_code == 404
    assert api.get("/environment").json()["detail"] == "market_environment is empty"
    answer = api.get("/backtests/stdev/trades")
    assert (answer.status_code, answer.json()["detail"]) == (
        404,
        "stdev has not been backtested yet",
    )
    health = api.get("/health").json()
    assert health["assets"]["raw_prices"] == {"rows": 0, "latest": None}


def test_nan_and_infinity_are_answered_as_null(tmp_path):
    db = tmp_path / "nan.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute(
            "CREATE TABLE performance_metrics AS SELECT * FROM (VALUES "
            "('a', 'nan'::DOUBLE, 'inf'::DOUBLE, DATE '2025-01-02'), "
            "('b', 1.5, '-inf'::DOUBLE, NULL)) t(strategy, sharpe, profit_factor, last_session)"
        )
    answer = client(db).get("/performance")
    assert answer.status_code == 200
    assert answer.json()["data"] == [
        {"strategy": "a", "sharpe": None, "profit_factor": None, "last_session": "2025-01-02"},
        {"strategy": "b", "sharpe": 1.5, "profit_factor": None, "last_session": None},
    ]


# --- a writer in another process -------------------------------------------------------------------

WRITER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("INSERT INTO symbols VALUES ('NEW', 'New Co', 'IT', false)")
print("locked", flush=True)
sys.stdin.readline()  # hold the lock until the test says so
con.close()
"""


def small_store(db: Path) -> None:
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE symbols (symbol VARCHAR, name VARCHAR, sector VARCHAR, "
                    "is_benchmark BOOLEAN)")  # fmt: skip
        con.execute("INSERT INTO symbols VALUES ('AAPL', 'Apple', 'IT', false)")


def hold_the_lock(db: Path) -> subprocess.Popen:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert writer.stdout.readline().strip() == "locked"
    return writer


def release(writer: subprocess.Popen) -> None:
    writer.stdin.write("\n")
    writer.stdin.flush()
    assert writer.wait(timeout=30) == 0


def symbols_of(api: TestClient) -> list[str]:
    answer = api.get("/symbols")
    assert answer.status_code == 200, answer.text
    return [r["symbol"] for r in answer.json()["data"]]


def test_the_api_never_holds_the_file_and_a_locked_file_serves_the_last_snapshot(tmp_path):
    db = tmp_path / "shared.duckdb"
    small_store(db)
    store = DuckDBSnapshotStore(db, refresh_seconds=0.0, snapshot_dir=tmp_path / "snap")
    api = client(db, store=store)
    assert symbols_of(api) == ["AAPL"]
    # between requests the API holds no lock: a writer's open succeeds at once
    writer = hold_the_lock(db)
    try:
        # while it writes, the snapshot answers (the data before the write), fast
        began = time.monotonic()
        assert symbols_of(api) == ["AAPL"]
        assert time.monotonic() - began < store.lock_wait_seconds
    finally:
        release(writer)
    assert symbols_of(api) == ["AAPL", "NEW"]  # the file changed: a new snapshot
    assert len(list((tmp_path / "snap").glob("*.duckdb"))) == 1  # the old copy is gone


def test_a_locked_file_without_a_snapshot_is_503_with_retry_after(tmp_path):
    db = tmp_path / "locked.duckdb"
    small_store(db)
    writer = hold_the_lock(db)
    try:
        for store in (
            DuckDBSnapshotStore(db, lock_wait_seconds=0.3, snapshot_dir=tmp_path / "snap"),
            DuckDBDirectStore(db, lock_wait_seconds=0.3),
        ):
            answer = client(db, store=store).get("/symbols")
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"] == "5"
            assert "locked by a writer" in answer.json()["detail"]
    finally:
        release(writer)
    assert symbols_of(client(db, store=DuckDBDirectStore(db))) == ["AAPL", "NEW"]


# --- auth and CORS -----------------------------------------------------------------------------------


def test_a_token_guards_every_data_route(stored):
    db, reports = stored
    api = client(db, reports, token="s3cret-tøken")
    for url in ("/symbols", "/prices/AAPL", "/reports/stdev", "/journal/pnl"):
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Bearer s3cret-t"},
            {"Authorization": "Basic s3cret-tøken"},
            {"Authorization": "Bearer "},
        ):
            answer = api.get(url, headers={k: v.encode() for k, v in headers.items()})
            assert answer.status_code == 401, (url, headers)
            assert answer.headers["www-authenticate"] == "Bearer"
        ok = api.get(url, headers={"Authorization": "Bearer s3cret-tøken".encode()})
        assert ok.status_code == 200, (url, ok.text)
    # open: the probe and the schema; /health names the file only to a caller with the token
    assert api.get("/docs").status_code == 200 and api.get("/openapi.json").status_code == 200
    anonymous = api.get("/health").json()["storage"]
    assert anonymous["kind"] == "duckdb" and "location" not in anonymous
    authorised = api.get("/health", headers={"Authorization": "Bearer s3cret-tøken".encode()})
    assert authorised.json()["storage"]["location"] == str(db)


def test_cors_allows_the_configured_origins(stored):
    api = client(*stored, cors_origins=["https://desk.example"])
    preflight = api.options(
        "/symbols",
        headers={
            "Origin": "https://desk.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "Authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://desk.example"
    other = api.get("/symbols", headers={"Origin": "https://elsewhere.example"})
    assert "access-control-allow-origin" not in other.headers
    anyone = client(*stored).get("/symbols", headers={"Origin": "https://elsewhere.example"})
    assert anyone.headers["access-control-allow-origin"] == "*"


CHURN = """
import sys
from pathlib import Path
from trading_assets.storage.duckdb_connection import connect_with_retries
for i in range(int(sys.argv[2])):
    # the IO manager's own open: waits (backoff) while a reader holds the file
    with connect_with_retries(Path(sys.argv[1]), read_only=False, timeout_seconds=60,
                              base_seconds=0.01) as con:
        con.execute("INSERT INTO symbols VALUES (?, 'Co', 'IT', false)", [f"S{i}"])
print("done", flush=True)
"""


def test_readers_during_a_stream_of_writes_all_succeed_and_never_go_back(tmp_path):
    """A writer in another process commits 40 times through the IO manager's open while four
    threads keep reading: every request answers 200, each thread sees the universe only grow, the
    writer never gives up, and once it is done the API sees its last write."""
    import threading

    db = tmp_path / "churn.duckdb"
    small_store(db)
    api = client(
        db, store=DuckDBSnapshotStore(db, refresh_seconds=0.0, snapshot_dir=tmp_path / "s")
    )
    writer = subprocess.Popen(
        [sys.executable, "-c", CHURN, str(db), "40"], stdout=subprocess.PIPE, text=True
    )
    seen: dict[int, list[int]] = {}
    failures: list[str] = []

    def reader(n: int) -> None:
        counts = seen.setdefault(n, [])
        while writer.poll() is None or len(counts) < 20:
            answer = api.get("/symbols")
            if answer.status_code != 200:
                failures.append(answer.text)
                return
            counts.append(len(answer.json()["data"]))

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert writer.wait(timeout=120) == 0 and writer.stdout.read().strip() == "done"
    assert failures == []
    for counts in seen.values():
        assert counts == sorted(counts), counts  # a later request never sees an older snapshot
    assert len(symbols_of(api)) == 41
