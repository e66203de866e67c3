"""Metadata a person wants in the UI for a table-shaped output.

For a partition range, Dagster copies an output's metadata onto the materialisation event of every
partition in the range: a 60 KB plot on a 1,650-session backfill became 100 MB of event log. So
heavy metadata (previews, reports, plots) goes on the materialisation only when one partition is
written; for a range it is logged once, as an observation of the range's last partition, and the
materialisations carry the light numbers.
"""

import dagster as dg
import pandas as pd

PREVIEW_ROWS = 5


def frame_metadata(frame: pd.DataFrame) -> dict[str, dg.MetadataValue]:
    """Row count and a markdown preview of the first rows."""
    return {
        "rows": dg.MetadataValue.int(len(frame)),
        "preview": dg.MetadataValue.md(frame.head(PREVIEW_ROWS).to_markdown(index=False)),
    }


def output_metadata(
    context: dg.AssetExecutionContext, light: dict[str, object], heavy: dict[str, object]
) -> dict[str, object]:
    """The metadata to put on the Output: everything for one partition, only ``light`` for a range.

    For a range, ``heavy`` is logged once as an AssetObservation of the range's last partition.
    """
    if (
        not context.has_partition_key_range
        or context.partition_key_range.start == context.partition_key_range.end
    ):
        return {**light, **heavy}
    last = context.partition_key_range.end
    context.log_event(
        dg.AssetObservation(
            asset_key=context.asset_key, partition=last, metadata={**light, **heavy}
        )
    )
    return {
        **light,
        "details": dg.MetadataValue.text(
            f"preview, report and plots: observation of partition {last}"
        ),
    }
