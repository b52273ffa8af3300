"""The `sentinel` command: drives Dagster from outside (headless runs, live progress, summary).

`main` parses the command line, `orchestrate` launches the region and report runs against the
`DAGSTER_HOME` instance, `progress` reads their records back and `live` shows them.
"""

import sys

from sentinel_assets import vocabulary

# Every command needs the fleet's vocabulary, and the modules below load it at import (see
# `sentinel_assets.vocabulary`): a bad fleet file ends `sentinel` here with its one sentence
# and exit status 2, like any other mistake in the settings, before a traceback can appear.
try:
    vocabulary.configured()
except vocabulary.FleetVocabularyError as error:
    print(f"sentinel: {error}", file=sys.stderr)
    raise SystemExit(2) from None
