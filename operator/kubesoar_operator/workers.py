"""How many threads of the operator call the Kubernetes API at once, in one place.

kopf runs sync handlers in a pool of `HANDLER_WORKERS` threads and the refresher runs
up to `REFRESH_WORKERS` refreshes in threads; each may hold one API connection. The API
client's connection pool (`kube.make_api_client`) is sized from both: a smaller pool
makes urllib3 discard connections it cannot keep ("Connection pool is full,
discarding connection") and open new ones on the next calls.
"""

from __future__ import annotations

HANDLER_WORKERS = 16
"""kopf's `settings.execution.max_workers`: Playbook and AlertSource handlers at once."""
REFRESH_WORKERS = 12
"""Periodic refreshes at once (`refresher.Refresher`, in a thread pool of its own: asyncio's
default one has `min(32, cpus + 4)` threads, 6 on two cores, which capped them silently).
With 4, a thousand Playbooks rolling out at once waited ~40 s between SourceReady and
Ready for their turn (bench/scale); idle Playbooks no longer take turns (refresher.py)."""
API_CONNECTIONS = HANDLER_WORKERS + REFRESH_WORKERS
"""Connections the API client keeps per API server: one for every thread that may call."""
