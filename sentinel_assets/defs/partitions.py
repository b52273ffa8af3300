import dagster as dg

from sentinel_assets.contracts import REGIONS

region_partitions = dg.StaticPartitionsDefinition(list(REGIONS))
