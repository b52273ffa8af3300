"""Dagster definitions for Sentinel, one module per kind of definition."""
