"""Where the benchmark scripts find the repository and the shared data.

``MEDSEGAI_SHARED_DATA`` overrides the data folder (default ``../shared/data`` beside the
repository), as it does for the tests.
"""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("MEDSEGAI_SHARED_DATA", REPO.parent / "shared" / "data"))
HIPPOCAMPUS = SHARED_DATA / "hippocampus"
