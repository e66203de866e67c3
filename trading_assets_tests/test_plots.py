"""Environment chart: a real, small PNG with every environment's shade, wrapped as a markdown data URI."""

from __future__ import annotations

import base64
import datetime as dt
import io
import re
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from PIL import Image

import trading_assets
from trading_assets.core.plots import (
    ENVIRONMENT_COLORS,
    PLOT_DPI,
    PLOT_SIZE_INCHES,
    PNG_SIGNATURE,
    UNCLASSIFIED_COLOR,
    PlotInputError,
    environment_plot_png,
    png_data_uri_markdown,
)
from trading_assets.core.regime import compute_market_environment

SAMPLE_PRICES = Path(trading_assets.__file__).parent / "sources/data/sample_prices.parquet"
MAX_PNG_BYTES = 200_000
SHADE_ALPHA = 0.45  # as drawn in environment_plot_png


@pytest.fixture(scope="module")
def sample_env() -> pd.DataFrame:
    """2019-01 .. 2025-07 of the bundled sample: six and a half years, all four environments."""
    prices = pd.read_parquet(SAMPLE_PRICES, columns=["symbol", "date", "close"])
    by_symbol = prices.groupby("symbol")["close"]
    prices["sma_50"] = by_symbol.transform(lambda s: s.rolling(50).mean())
    prices["sma_200"] = by_symbol.transform(lambda s: s.rolling(200).mean())
    return compute_market_environment(prices)


@pytest.fixture(scope="module")
def sample_png(sample_env) -> bytes:
    return environment_plot_png(sample_env)


def _shade(color: str) -> np.ndarray:
    """The colour a shade takes over the white axes background."""
    return 1.0 - SHADE_ALPHA * (1.0 - np.array(to_rgb(color)))


def test_png_is_valid_and_small(sample_png):
    assert sample_png.startswith(PNG_SIGNATURE)
    assert 5_000 < len(sample_png) < MAX_PNG_BYTES
    with Image.open(io.BytesIO(sample_png)) as img:
        img.verify()
    with Image.open(io.BytesIO(sample_png)) as img:
        assert img.format == "PNG"
        assert img.size == (
            round(PLOT_SIZE_INCHES[0] * PLOT_DPI),
            round(PLOT_SIZE_INCHES[1] * PLOT_DPI),
        )


def test_every_environment_is_shaded(sample_png, sample_env):
    pixels = mpimg.imread(io.BytesIO(sample_png))[..., :3]
    assert set(sample_env["environment"].dropna()) == set(ENVIRONMENT_COLORS)
    for color in [*ENVIRONMENT_COLORS.values(), UNCLASSIFIED_COLOR]:
        close = np.abs(pixels - _shade(color)).max(axis=-1) < 0.02
        assert close.sum() > 500, f"no shaded area in {color}"


def test_small_frames_with_unclassified_and_unsorted_sessions():
    env = pd.DataFrame(
        {
            "date": [dt.date(2025, 7, 23), dt.date(2025, 7, 21), dt.date(2025, 7, 22)],
            "spy_close": [630.0, 620.0, np.nan],
            "environment": ["A", None, "D"],
        }
    )
    png = environment_plot_png(env)
    assert png.startswith(PNG_SIGNATURE)
    one = environment_plot_png(env.iloc[[0]])
    assert one.startswith(PNG_SIGNATURE)


def test_bad_frames_raise():
    with pytest.raises(PlotInputError, match="no sessions"):
        environment_plot_png(pd.DataFrame(columns=["date", "spy_close", "environment"]))
    with pytest.raises(PlotInputError, match="spy_close"):
        environment_plot_png(pd.DataFrame({"date": [dt.date(2025, 7, 23)], "environment": ["A"]}))


def test_markdown_wraps_a_base64_data_uri(sample_png):
    md = png_data_uri_markdown(sample_png, "SPY [environment]\nsince 2019")
    match = re.fullmatch(r"!\[([^\]\n]*)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", md)
    assert match is not None
    assert match.group(1) == "SPY (environment) since 2019"
    assert base64.b64decode(match.group(2), validate=True) == sample_png


def test_markdown_rejects_non_png():
    with pytest.raises(PlotInputError, match="PNG"):
        png_data_uri_markdown(b"GIF89a....", "x")
    with pytest.raises(PlotInputError, match="PNG"):
        png_data_uri_markdown("not bytes", "x")
