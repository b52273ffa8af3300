#!/bin/sh
# Run once by the postgres image on an empty data folder: the database the report tables
# are published to (SENTINEL_PG_ANALYTICS_DB), beside Dagster's own (POSTGRES_DB).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -c "CREATE DATABASE \"${SENTINEL_PG_ANALYTICS_DB}\" OWNER \"${POSTGRES_USER}\""
