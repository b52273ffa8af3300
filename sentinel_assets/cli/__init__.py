"""The `sentinel` command: drives Dagster from outside (headless runs, live progress, summary).

`main` parses the command line, `orchestrate` launches the region and report runs against the
`DAGSTER_HOME` instance, `progress` reads their records back and `live` shows them.
"""
