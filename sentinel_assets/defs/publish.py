"""Report tables published to PostgreSQL for BI tools: only when SENTINEL_PUBLISH_REPORTS=1.

With the switch off (the embedded default) this module adds nothing to the graph. With it
on, `published_reports` joins the `reports` group (so the `regional_report` job and the
refresh sensor run it after the five reports it publishes), and its connection settings
come from environment variables through `dg.EnvVar`. The work is in `sentinel_assets.publish`.
"""

import os

import dagster as dg
import polars as pl

from sentinel_assets import production, publish, warehouse
from sentinel_assets.defs.assets import REPORT_GROUP, TRANSIENT_RETRY
from sentinel_assets.defs.failures import retry_transient_only
from sentinel_assets.defs.metadata import markdown
from sentinel_assets.defs.resources import WarehouseCatalog


class ReportPublisher(dg.ConfigurableResource):
    """The PostgreSQL database (and schema) BI tools read the report tables from. TLS comes
    from libpq's PGSSLMODE / PGSSLROOTCERT."""

    host: str
    port: int
    user: str
    password: str
    dbname: str
    schema_name: str = "sentinel_reports"

    def target(self) -> production.PublishTarget:
        env = {
            **os.environ,
            "SENTINEL_PG_HOST": self.host,
            "SENTINEL_PG_PORT": str(self.port),
            "SENTINEL_PG_USER": self.user,
            "SENTINEL_PG_PASSWORD": self.password,
            "SENTINEL_PG_ANALYTICS_DB": self.dbname,
            "SENTINEL_PUBLISH_SCHEMA": self.schema_name,
        }
        try:
            return production.publish_target(env)
        except production.ProductionConfigError as error:
            raise dg.Failure(str(error)) from None


@dg.asset(
    deps=list(publish.PUBLISHED_TABLES),
    group_name=REPORT_GROUP,
    pool=warehouse.CATALOG_POOL,  # reads the catalog file, like the report steps that write it
    kinds={"postgres"},
    retry_policy=TRANSIENT_RETRY,
)
@retry_transient_only
def published_reports(
    context: dg.AssetExecutionContext, catalog: WarehouseCatalog, report_publisher: ReportPublisher
) -> dg.MaterializeResult:
    """The cross-region report tables copied to PostgreSQL, each replaced in one transaction
    (a dashboard never sees half a table); dropped connections and timeouts are retried."""
    target = report_publisher.target()
    with catalog.get_connection() as conn:
        frames = {
            table: conn.sql(f"SELECT * FROM {table}").pl() for table in publish.PUBLISHED_TABLES
        }

    def on_retry(attempt: int, error: Exception) -> None:
        context.log.warning(f"publish attempt {attempt} failed ({error}); retrying")

    try:
        results = publish.publish_tables(target, frames, on_retry=on_retry)
    except publish.PublishError as error:
        raise dg.Failure(str(error)) from None
    summary = pl.DataFrame(
        {
            "table": [f"{target.schema}.{r.table}" for r in results],
            "rows": [r.rows for r in results],
            "attempts": [r.attempts for r in results],
            "seconds": [round(r.seconds, 3) for r in results],
        }
    )
    return dg.MaterializeResult(
        metadata={
            "database": f"{target.host}:{target.port}/{target.dbname}",
            "schema": target.schema,
            "rows": sum(r.rows for r in results),
            "tables": markdown(summary, rows=len(results)),
        }
    )


def _enabled() -> bool:
    try:
        return production.publishing_enabled()
    except production.ProductionConfigError:
        return True  # an unreadable switch: keep the asset, so its run says what is wrong


@dg.definitions
def publishing() -> dg.Definitions:
    if not _enabled():
        return dg.Definitions()
    return dg.Definitions(
        assets=[published_reports],
        resources={
            "report_publisher": ReportPublisher(
                host=dg.EnvVar("SENTINEL_PG_HOST"),
                port=dg.EnvVar.int("SENTINEL_PG_PORT"),
                user=dg.EnvVar("SENTINEL_PG_USER"),
                password=dg.EnvVar("SENTINEL_PG_PASSWORD"),
                dbname=dg.EnvVar("SENTINEL_PG_ANALYTICS_DB"),
                schema_name=os.environ.get("SENTINEL_PUBLISH_SCHEMA", "sentinel_reports"),
            )
        },
    )
