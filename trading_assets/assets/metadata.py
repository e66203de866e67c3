"""Metadata a person wants in the UI for a table-shaped output."""

from __future__ import annotations

import dagster as dg
import pandas as pd

PREVIEW_ROWS = 5


def frame_metadata(frame: pd.DataFrame) -> dict[str, dg.MetadataValue]:
    """Row count and a markdown preview of the first rows."""
    return {
        "rows": dg.MetadataValue.int(len(frame)),
        "preview": dg.MetadataValue.md(frame.head(PREVIEW_ROWS).to_markdown(index=False)),
    }
