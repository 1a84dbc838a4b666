"""kubesoar's system of record on PostgreSQL: alerts, runs, the action journal, expiring keys.

Used by trusted parts only (router, operator, `kubesoar db migrate`); runtime
pods never see the database. Modules by concern:

- `migrate`      versioned SQL migrations (migrations/NNNN_name.sql)
- `pool`         connection pools; `url` where the URL comes from, redacted
- `groupcommit`  GroupCommitter: alert + runs, many requests per commit
- `dispatch`     claim / heartbeat / complete / release / expire_leases
- `journal`      the action journal by (run, seq)
- `approvals`    runs waiting for a person: suspend / decide / expire_approvals
- `keys`         replay cache and rate limits shared by replicas
- `counters`, `retention`
- `errors`       the exception tree (StoreError and below)
"""

from kubesoar_store.errors import (
    DatabaseUrlError,
    InvalidSubmission,
    MigrationFailed,
    NotLeased,
    SchemaError,
    SchemaTooNew,
    SchemaTooOld,
    StoreError,
    StoreOverloaded,
    StoreUnavailable,
)
from kubesoar_store.groupcommit import GroupCommitter
from kubesoar_store.models import (
    Accepted,
    ClaimedRun,
    ExpiredLease,
    NewAlert,
    NewRun,
    PlaybookCounters,
    RunRecord,
)

__all__ = [
    "Accepted",
    "ClaimedRun",
    "DatabaseUrlError",
    "ExpiredLease",
    "GroupCommitter",
    "InvalidSubmission",
    "MigrationFailed",
    "NewAlert",
    "NewRun",
    "NotLeased",
    "PlaybookCounters",
    "RunRecord",
    "SchemaError",
    "SchemaTooNew",
    "SchemaTooOld",
    "StoreError",
    "StoreOverloaded",
    "StoreUnavailable",
]
