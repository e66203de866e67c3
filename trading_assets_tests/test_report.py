"""The HTML performance report and the UI's equity and drawdown PNGs, on 25 years of real prices.

The stand-in strategy is an equal-weight buy-and-hold of four stocks from the shared market data,
with SPY as the benchmark. The report is parsed back here, compared with numbers computed
independently (pandas resample), and opened in Debian's headless chromium: its DOM must hold the
chart nodes and its screenshot the chart colours. chromium is a requirement, not an option: without
it these tests fail, saying how to install it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import re
import shutil
import signal
import stat
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from PIL import Image

from trading_assets.core.backtest.result import TRADE_COLUMNS
from trading_assets.core.metrics import performance_summary, returns_from_equity, trade_statistics
from trading_assets.core.plots import (
    PLOT_DPI,
    PLOT_SIZE_INCHES,
    PNG_SIGNATURE,
    PlotInputError,
    drawdown_png,
    equity_curve_png,
    png_data_uri_markdown,
)
from trading_assets.core.report import (
    BENCHMARK_COLOR,
    DRAWDOWN_COLOR,
    HEATMAP_FULL_MONTH,
    METRIC_LABELS,
    STRATEGY_COLOR,
    TRADE_ROWS_SHOWN,
    heat_color,
    rebase_benchmark,
    render_report,
    write_report,
)
from trading_assets.core.svg_charts import AREA_FILL_OPACITY, PLOT_WIDTH, downsample_minmax
from trading_assets_tests.conftest import shared_prices

HOLDINGS = ["AAPL", "MSFT", "JNJ", "XOM"]
START_EQUITY = 100_000.0
EVIL = '<script>alert("x")</script>'
STRATEGY = f"ma_crossover {EVIL}"
GENERATED_AT = "2025-07-24 06:00 UTC"
METRICS = {
    "total_return": 2.5,
    "cagr": 0.1234,
    "sharpe": 0.8123,
    "sortino": float("nan"),
    "max_drawdown": -0.4771,
    "profit_factor": float("inf"),
    "trade_count": 1234,
    "exposure_pct": 65.3,  # percent, as core/metrics.py gives it
    "custom_metric": 123.456,
}
EXPECTED_METRICS = {
    "total_return": ("Total return", "250.00%"),
    "cagr": ("CAGR", "12.34%"),
    "sharpe": ("Sharpe", "0.81"),
    "sortino": ("Sortino", "–"),
    "max_drawdown": ("Max drawdown", "-47.71%"),
    "profit_factor": ("Profit factor", "∞"),
    "trade_count": ("Trades", "1,234"),
    "exposure_pct": ("Exposure", "65.30%"),
    "custom_metric": ("custom metric", "123.5"),
}
CHROMIUM_TIMEOUT_S = 120
CHROMIUM_INSTALL = (
    "Debian's chromium is required by the report's browser tests and is not on PATH: install it "
    "with `apt-get install -y chromium` (as root, else `sudo -n apt-get install -y chromium`); "
    ".ci/run does this."
)
WINDOW = (1280, 2400)
MAX_PNG_BYTES = 200_000


# --- reading the HTML back -------------------------------------------------------------------------


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    text: str = ""

    def all(self, tag: str | None = None, cls: str | None = None) -> list[Node]:
        found = []
        for child in self.children:
            classes = child.attrs.get("class", "").split()
            if (tag is None or child.tag == tag) and (cls is None or cls in classes):
                found.append(child)
            found += child.all(tag, cls)
        return found

    def by_id(self, node_id: str) -> Node:
        matches = [n for n in self.all() if n.attrs.get("id") == node_id]
        assert len(matches) == 1, f"{len(matches)} elements with id {node_id}"
        return matches[0]

    def full_text(self) -> str:
        return self.text + "".join(c.full_text() for c in self.children)


class TreeBuilder(HTMLParser):
    VOID = {"meta", "link", "br", "img", "input", "hr", "col", "source", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag):
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(Node("#text", {}, text=data))


def parse(html: str) -> Node:
    builder = TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def points(polyline: Node) -> np.ndarray:
    return np.array([[float(v) for v in p.split(",")] for p in polyline.attrs["points"].split()])


# --- data ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def closes() -> pd.DataFrame:
    prices = shared_prices([*HOLDINGS, "SPY"])
    wide = prices.pivot(index="date", columns="symbol", values="close").dropna()
    assert len(wide) > 6000, "expected 25 years of sessions"
    return wide


@pytest.fixture(scope="module")
def equity(closes) -> pd.Series:
    """Equal weight on the first session, then held: the stand-in strategy's daily equity."""
    held = closes[HOLDINGS]
    return (held / held.iloc[0]).sum(axis=1) * (START_EQUITY / len(HOLDINGS))


def trade(symbol, entry, exit_date, pnl, **extra) -> dict:
    row = dict.fromkeys(TRADE_COLUMNS)
    row |= {
        "strategy": "ma_crossover",
        "symbol": symbol,
        "side": "long",
        "entry_date": entry,
        "entry_price": 100.0,
        "exit_date": exit_date,
        "exit_price": None if exit_date is None else 100.0 + pnl / 10,
        "shares": 10.0,
        "fees": 0.2,
        "pnl": pnl,
        "r_multiple": pnl / 50.0,
        "exit_reason": None if exit_date is None else "signal",
    }
    return row | extra


@pytest.fixture(scope="module")
def trades() -> pd.DataFrame:
    rows = [
        trade("AAPL", dt.date(2024, 3, 1), dt.date(2024, 4, 2), 120.0),
        trade(EVIL, dt.date(2025, 7, 1), None, -35.5),  # still open
        trade("MSFT", dt.date(2025, 1, 6), dt.date(2025, 2, 3), -80.0, side="short", setup="MR"),
        trade("JNJ", dt.date(2023, 5, 2), dt.date(2023, 6, 1), 10.0, exit_reason="stop & <b>"),
    ]
    return pd.DataFrame(rows, columns=list(TRADE_COLUMNS))


@pytest.fixture(scope="module")
def report(equity, closes, trades) -> str:
    return render_report(
        STRATEGY, equity, closes["SPY"], trades, METRICS, generated_at=GENERATED_AT
    )


# --- the HTML ----------------------------------------------------------------------------------------


def test_sections_and_charts(report, equity):
    page = parse(report)
    sections = [s.attrs["id"] for s in page.all("section")]
    assert sections == ["equity", "drawdown", "monthly-returns", "metrics", "trades"]
    equity_chart = page.by_id("equity-chart")
    assert [p.attrs["class"] for p in equity_chart.all("polyline")] == [
        "series series-strategy",
        "series series-benchmark",
    ]
    drawdown_chart = page.by_id("drawdown-chart")
    assert len(drawdown_chart.all("polyline", "series-drawdown")) == 1
    assert len(drawdown_chart.all("polygon", "area-drawdown")) == 1
    for line in page.all("polyline"):
        assert line.attrs["data-sessions"] == str(len(equity))
        # Downsampled to at most two points per pixel column (+ first and last).
        assert 100 < len(points(line)) <= 2 * PLOT_WIDTH + 2 < len(equity)
    assert "log scale" in equity_chart.full_text()  # the curve grows ~70x in 25 years
    # 25 years and 4 trades: the file stays small.
    assert len(report.encode()) < 250_000


def test_benchmark_is_rebased_to_the_starting_equity(equity, closes):
    bench = rebase_benchmark(closes["SPY"], equity)
    assert bench.iloc[0] == pytest.approx(START_EQUITY)
    expected = closes["SPY"].to_numpy() / closes["SPY"].iloc[0] * START_EQUITY
    np.testing.assert_allclose(bench.to_numpy(), expected, rtol=1e-12)
    # A benchmark starting later is rebased on the first session both have; a gap carries on.
    late = closes["SPY"].iloc[100:].drop(closes.index[200])
    rebased = rebase_benchmark(late, equity)
    assert rebased.iloc[:100].isna().all()
    assert rebased.iloc[100] == pytest.approx(equity.iloc[100])
    assert rebased.iloc[200] == rebased.iloc[199]
    assert rebase_benchmark(None, equity) is None


def test_heatmap_cells_are_the_monthly_returns(report, equity):
    curve = equity.copy()
    curve.index = pd.to_datetime(curve.index)
    month_end = curve.resample("ME").last()
    monthly = month_end / month_end.shift(1).fillna(curve.iloc[0]) - 1.0
    year_end = curve.resample("YE").last()
    yearly = year_end / year_end.shift(1).fillna(curve.iloc[0]) - 1.0
    table = parse(report).by_id("monthly-returns-table")
    rows = table.all("tr")[1:]
    assert [int(r.attrs["data-year"]) for r in rows] == list(range(2000, 2026))
    seen = 0
    for row in rows:
        year = int(row.attrs["data-year"])
        for cell in row.all("td"):
            month = cell.attrs["data-month"]
            if month == "year":
                expected = yearly[yearly.index.year == year].iloc[0]
            else:
                match = monthly[(monthly.index.year == year) & (monthly.index.month == int(month))]
                if match.empty:  # 2025-08 .. 2025-12: no sessions yet
                    assert year == 2025 and int(month) > 7 and cell.full_text() == ""
                    continue
                expected = match.iloc[0]
            assert float(cell.attrs["data-return"]) == pytest.approx(expected, abs=1e-12)
            assert cell.full_text() == f"{expected * 100:.1f}%"
            red, green = int(cell.attrs["style"][-6:-4], 16), int(cell.attrs["style"][-4:-2], 16)
            if abs(expected) > 0.005:
                assert (green > red) == (expected > 0), (year, month, expected)
            seen += 1
    assert seen == 307 + 26  # Jan 2000 .. Jul 2025, and 26 year totals


def test_metrics_are_formatted(report):
    table = parse(report).by_id("metrics-table")
    rows = {
        r.attrs["data-metric"]: (r.all("th")[0].full_text(), r.all("td")[0].full_text())
        for r in table.all("tr")
    }
    assert rows == EXPECTED_METRICS
    assert list(rows) == list(METRICS)  # in the given order


def test_every_key_of_core_metrics_has_a_label_and_format(equity, trades):
    metrics = performance_summary(returns_from_equity(equity)) | trade_statistics(trades, equity)
    assert set(metrics) <= set(METRIC_LABELS)
    page = parse(render_report("x", equity, None, trades, metrics, generated_at=GENERATED_AT))
    rows = page.by_id("metrics-table").all("tr")
    shown = {r.attrs["data-metric"]: r.all("td")[0].full_text() for r in rows}
    assert list(shown) == list(metrics)
    assert shown["trade_count"] == "3"  # closed trades
    assert shown["max_drawdown"] == f"{metrics['max_drawdown'] * 100:.2f}%"
    assert shown["exposure_pct"] == f"{metrics['exposure_pct']:.2f}%"
    assert 0 < metrics["exposure_pct"] < 100


def test_trade_rows_newest_first_and_escaped(report):
    page = parse(report)
    rows = page.by_id("trades-table").all("tr", "trade")
    cells = [[td.full_text() for td in r.all("td")] for r in rows]
    assert [c[0] for c in cells] == [EVIL, "MSFT", "AAPL", "JNJ"]
    assert cells[0][5] == "open" and cells[0][6] == "–" and rows[0].attrs["class"] == "trade open"
    assert cells[0][9] == "-35.50" and cells[0][10] == "-0.71"
    assert cells[1][:4] == ["MSFT", "short", "MR", "2025-01-06"]
    assert cells[2][9] == "+120.00" and cells[2][11] == "signal"
    assert cells[3][11] == "stop & <b>"
    assert "4 trades (1 open" in page.by_id("trades-summary").full_text()
    # Every string reached the page as text: the only elements are the report's own.
    assert not page.all("script") and not page.all("b")
    assert "&lt;script&gt;" in report and "<script" not in report.lower()
    assert page.all("title")[0].full_text() == f"Performance report: {STRATEGY}"
    assert STRATEGY in page.all("footer")[0].full_text()


def test_self_contained(report):
    page = parse(report)
    links = [
        a for n in page.all() for k, a in n.attrs.items() if k in {"src", "href", "xlink:href"}
    ]
    assert links == []
    assert not re.search(r"https?://", report)
    assert "url(" not in report and "@import" not in report
    assert not page.all("link") and not page.all("script") and not page.all("img")
    csp = [m for m in page.all("meta") if m.attrs.get("http-equiv") == "Content-Security-Policy"]
    assert csp[0].attrs["content"].startswith("default-src 'none'")


def test_long_trade_list_is_cut_to_the_newest(equity):
    entries = pd.bdate_range("2001-01-02", periods=1203)
    many = pd.DataFrame(
        [
            trade(f"S{i}", d.date(), (d + pd.Timedelta(days=3)).date(), 1.0)
            for i, d in enumerate(entries)
        ]
    )
    page = parse(render_report("x", equity, None, many, {}, generated_at=GENERATED_AT))
    rows = page.by_id("trades-table").all("tr", "trade")
    assert len(rows) == TRADE_ROWS_SHOWN
    assert rows[0].all("td")[0].full_text() == "S1202"
    assert rows[-1].all("td")[0].full_text() == f"S{1203 - TRADE_ROWS_SHOWN}"
    assert "703 older trades omitted" in page.by_id("trades-summary").full_text()


def test_empty_and_missing_inputs_still_render(equity):
    nothing = render_report("empty", pd.Series(dtype="float64"), None, pd.DataFrame(), {})
    page = parse(nothing)
    assert [s.attrs["id"] for s in page.all("section")] == [
        "equity", "drawdown", "monthly-returns", "metrics", "trades",
    ]  # fmt: skip
    assert not page.all("svg")
    text = page.full_text()
    for message in ["No equity data", "no monthly returns", "No metrics given", "No trades"]:
        assert message in text
    nan_metrics = dict.fromkeys(EXPECTED_METRICS, float("nan")) | {"trade_count": None}
    empty_trades = pd.DataFrame(columns=list(TRADE_COLUMNS))
    page = parse(render_report("no bench", equity, None, empty_trades, nan_metrics))
    assert {td.full_text() for td in page.by_id("metrics-table").all("td")} == {"–"}
    assert len(page.by_id("equity-chart").all("polyline")) == 1
    assert "No benchmark given" in page.by_id("equity").full_text()
    later = pd.Series([1.0, 2.0], index=[dt.date(2030, 1, 2), dt.date(2030, 1, 3)])
    page = parse(render_report("far bench", equity.iloc[:1], later, empty_trades, {}))
    assert "no session in common" in page.by_id("equity").full_text()
    assert len(page.by_id("equity-chart").all("polyline")) == 1  # one session still draws
    flat = pd.Series(START_EQUITY, index=equity.index[:30])
    assert "No drawdown" in parse(render_report("flat", flat, None, None, {})).full_text()


def test_downsampling_keeps_extremes():
    rng = np.random.default_rng(7)
    y = np.cumsum(rng.normal(size=10_000))
    keep = downsample_minmax(y, 400)
    assert len(keep) <= 802 and keep[0] == 0 and keep[-1] == 9_999
    assert {int(np.argmin(y)), int(np.argmax(y))} <= set(keep)
    assert np.all(np.diff(keep) > 0)
    np.testing.assert_array_equal(downsample_minmax(y[:500], 400), np.arange(500))


def test_write_report_replaces_atomically(tmp_path, report):
    target = tmp_path / "reports" / "ma_crossover.html"
    assert write_report(target, report) == target
    assert target.read_text(encoding="utf-8") == report
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    with pytest.raises(TypeError):
        write_report(target, None)  # fails mid-write: the old report stays whole
    assert target.read_text(encoding="utf-8") == report
    assert sorted(p.name for p in target.parent.iterdir()) == ["ma_crossover.html"]


# --- in a real browser -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail(CHROMIUM_INSTALL, pytrace=False)
    return binary


def run_chromium(binary: str, profile, *args: str) -> str:
    """Headless chromium with a throwaway profile and no background traffic; stdout."""
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        f"--user-data-dir={profile}",
        "--no-first-run",
        "--disable-extensions",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        *args,
    ]
    # Own session, so a hung browser and all its helper processes can be killed together.
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=CHROMIUM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"chromium did not finish in {CHROMIUM_TIMEOUT_S} s: {command}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    if proc.returncode != 0:
        tail = err.decode("utf-8", "replace")[-2000:]
        pytest.fail(f"chromium exited {proc.returncode}: {command}\n{tail}")
    return out.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def report_file(tmp_path_factory, report):
    return write_report(tmp_path_factory.mktemp("report") / "ma_crossover.html", report)


def test_chromium_dom_holds_the_charts(chromium, report_file, tmp_path):
    dom = run_chromium(chromium, tmp_path / "profile", "--dump-dom", report_file.as_uri())
    page = parse(dom)
    for chart, series in [
        ("equity-chart", ["series-strategy", "series-benchmark"]),
        ("drawdown-chart", ["series-drawdown"]),
    ]:
        svgs = page.by_id(chart).all("svg")
        assert len(svgs) == 1
        for cls in series:
            (line,) = svgs[0].all("polyline", cls)
            assert len(points(line)) > 100
    assert len(page.by_id("monthly-returns-table").all("tr")) == 27
    assert len(page.by_id("trades-table").all("tr", "trade")) == 4
    assert not page.all("script")


def colour_mask(pixels: np.ndarray, color: str | tuple, tolerance: float = 0.06) -> np.ndarray:
    return np.abs(pixels - np.array(to_rgb(color))).max(axis=-1) < tolerance


def over_white(color: str, alpha: float) -> tuple:
    return tuple(1.0 - alpha * (1.0 - np.array(to_rgb(color))))


def test_chromium_screenshot_shows_the_charts(chromium, report_file, tmp_path):
    shot = tmp_path / "report.png"
    run_chromium(
        chromium,
        tmp_path / "profile",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--screenshot={shot}",
        report_file.as_uri(),
    )
    pixels = mpimg.imread(shot)[..., :3]
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0])
    assert (pixels < 0.9).any(axis=-1).sum() > 20_000  # far from a blank page
    rows = {}
    for name, color, least in [
        ("strategy", STRATEGY_COLOR, 300),
        ("benchmark", BENCHMARK_COLOR, 300),
        ("drawdown area", over_white(DRAWDOWN_COLOR, AREA_FILL_OPACITY), 20_000),
        ("deep green cell", heat_color(HEATMAP_FULL_MONTH, HEATMAP_FULL_MONTH), 2_000),
    ]:
        hit = colour_mask(pixels, color)
        assert hit.sum() > least, f"{name}: {hit.sum()} pixels of {color}"
        rows[name] = np.median(np.nonzero(hit)[0])
    # The charts come in the report's order, top to bottom (medians: a pale red heatmap cell may
    # match the drawdown shade).
    assert rows["strategy"] < rows["drawdown area"] < rows["deep green cell"]
    assert abs(rows["strategy"] - rows["benchmark"]) < 300  # one chart


# --- the PNGs for the Dagster UI ------------------------------------------------------------------


def test_equity_and_drawdown_pngs(equity, closes):
    size = (round(PLOT_SIZE_INCHES[0] * PLOT_DPI), round(PLOT_SIZE_INCHES[1] * PLOT_DPI))
    equity_png = equity_curve_png(equity, closes["SPY"])
    dd_png = drawdown_png(equity)
    for png, colors in [
        (equity_png, [STRATEGY_COLOR, BENCHMARK_COLOR]),
        (dd_png, [DRAWDOWN_COLOR, over_white(DRAWDOWN_COLOR, 0.3)]),
    ]:
        assert png.startswith(PNG_SIGNATURE)
        assert 5_000 < len(png) < MAX_PNG_BYTES
        with Image.open(io.BytesIO(png)) as img:
            img.verify()
        pixels = mpimg.imread(io.BytesIO(png))[..., :3]
        assert pixels.shape[1::-1] == size
        for color in colors:
            assert colour_mask(pixels, color, 0.03).sum() > 200, color
        assert png_data_uri_markdown(png, "chart").startswith("![chart](data:image/png;base64,")
    assert equity_curve_png(equity.iloc[:1]).startswith(PNG_SIGNATURE)  # one session, no benchmark
    with pytest.raises(PlotInputError, match="no sessions"):
        equity_curve_png(pd.Series(dtype="float64"))
    with pytest.raises(PlotInputError, match="no sessions"):
        drawdown_png(pd.Series([np.nan], index=[dt.date(2025, 1, 2)]))
