from __future__ import annotations

import os

# Never let google-auth probe a metadata server, nor anything reach a real Google endpoint.
os.environ.setdefault("NO_GCE_CHECK", "true")
os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
