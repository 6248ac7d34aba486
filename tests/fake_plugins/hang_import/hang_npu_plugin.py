"""A vendor plugin whose import never returns (waiting on a device that does not answer)."""

import time

time.sleep(3600)
