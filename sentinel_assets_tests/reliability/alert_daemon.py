"""The alert sensor ticking as the Dagster daemon ticks it, every 0.2 s instead of 30 s:
`python -m sentinel_assets_tests.reliability.alert_daemon CURSOR_FILE`.

The daemon keeps a sensor's cursor in its storage after each finished tick; this keeps it in
CURSOR_FILE (replaced atomically), so a SIGKILLed and restarted one carries on from the last
tick it finished, as the daemon does.
"""

import os
import sys
import time
from pathlib import Path

import dagster as dg

from sentinel_assets.defs.resources import build_resources
from sentinel_assets.defs.sensors import check_failure_alerts

TICK_S = 0.2


def main(cursor_file: Path) -> int:
    catalog = build_resources()["catalog"]
    with dg.DagsterInstance.get() as instance:
        while True:
            cursor = cursor_file.read_text() if cursor_file.exists() else None
            context = dg.build_sensor_context(
                instance=instance, cursor=cursor, resources={"catalog": catalog}
            )
            result = check_failure_alerts(context)
            if isinstance(result, dg.SensorResult) and result.cursor:
                tmp = cursor_file.with_suffix(".tmp")
                tmp.write_text(result.cursor)
                os.replace(tmp, cursor_file)
            skip = getattr(result, "skip_reason", None) or result
            print(getattr(skip, "skip_message", ""), flush=True)
            time.sleep(TICK_S)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
