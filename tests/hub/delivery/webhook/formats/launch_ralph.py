"""Run Ralph's LRS API on the file backend, appending every write to the one statements file.

Runs inside Ralph's own virtualenv (`lrs_server.py` beside it builds it): `python launch_ralph.py HOST PORT`.
Ralph's file backend creates a new file per write unless told to append, and then finds only the
first write when reading; the class attribute below is the documented switch.
"""

import sys

import uvicorn
from ralph.backends.data.base import BaseOperationType
from ralph.backends.lrs.fs import FSLRSBackend

FSLRSBackend.default_operation_type = BaseOperationType.APPEND

if __name__ == "__main__":
    uvicorn.run("ralph.api:app", host=sys.argv[1], port=int(sys.argv[2]), log_level="warning")
