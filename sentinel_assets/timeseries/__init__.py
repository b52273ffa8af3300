"""Telemetry over time: plain Polars functions, nothing here knows Dagster.

settings   the thresholds and windows (`TimeseriesSettings`, pydantic)
readings   the real readings of a day and its neighbours, deduplicated, in one shape
grid       resample to a regular grid, gap-aware time-weighted linear interpolation
rolling    trailing-window means, reading counts and the battery drain slope
anomalies  anomaly episodes per device and rule
stats      daily device and region statistics
star       the star schema: dim_device (SCD2), dim_date, fact_telemetry
verify     the blocking rules the assets' checks report
"""
