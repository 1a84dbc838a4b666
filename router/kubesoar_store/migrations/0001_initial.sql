-- kubesoar system of record, version 1: alerts, runs, the action journal and the
-- expiring keys (global dedup, HMAC replay cache, rate limits).
-- Runs in one transaction with the schema_migrations row (migrate.py).
-- Compatible with PostgreSQL 13 and newer (gen_random_uuid is core since 13).

CREATE TABLE alerts (
    id              uuid PRIMARY KEY,
    namespace       text        NOT NULL,
    source          text        NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    -- The normalised alert (kubesoar.Alert as JSON).
    alert           jsonb       NOT NULL,
    correlation_id  text,
    -- Hash of the AlertSource's dedup paths; NULL when the alert has none.
    dedup_key       bytea,
    -- Lifecycle for people working the alert; nothing sets these yet but the default.
    status          text        NOT NULL DEFAULT 'new'
                    CHECK (status IN ('new', 'in_progress', 'resolved')),
    determination   text        NOT NULL DEFAULT 'unknown'
                    CHECK (determination IN ('unknown', 'malicious', 'suspicious', 'benign')),
    assignee        text,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
-- Alerts of a namespace newest first; also the per-namespace count retention.
CREATE INDEX alerts_namespace_received ON alerts (namespace, received_at DESC);
-- Retention by age across namespaces.
CREATE INDEX alerts_received ON alerts (received_at);
CREATE INDEX alerts_correlation ON alerts (namespace, correlation_id)
    WHERE correlation_id IS NOT NULL;

CREATE TABLE runs (
    id               uuid PRIMARY KEY,
    alert_id         uuid        NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    namespace        text        NOT NULL,
    playbook         text        NOT NULL,
    entry_points     text[]      NOT NULL DEFAULT '{}',
    -- queued: waits for a dispatcher; running: leased (lease_* and token_hash set);
    -- waiting: parked by its playbook, not leased (reserved; nothing sets it yet);
    -- succeeded / failed: the runtime reported the record; dead: out of attempts.
    status           text        NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'running', 'waiting', 'succeeded', 'failed', 'dead')),
    -- The delivery attempt this run is on, from 1; a redelivery adds one.
    attempt          integer     NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    max_attempts     integer     NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    idempotency_key  text        NOT NULL UNIQUE,
    -- A queued run is not claimed before this (backoff after a hand-back).
    available_at     timestamptz NOT NULL DEFAULT now(),
    lease_owner      text,
    lease_expires_at timestamptz,
    -- sha256 of the per-run token; the token itself is never stored.
    token_hash       bytea,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    result           jsonb,
    error            text,
    traceback        text,
    CHECK ((status = 'running') = (lease_expires_at IS NOT NULL))
);
CREATE INDEX runs_alert ON runs (alert_id);
-- claim(): queued runs of a namespace/playbook, oldest first. Partial, so it
-- holds only the queue, not the history.
CREATE INDEX runs_queue ON runs (namespace, playbook, available_at, id)
    WHERE status = 'queued';
-- expire_leases(): running runs by lease end.
CREATE INDEX runs_leases ON runs (lease_expires_at) WHERE status = 'running';
-- kubectl get runs: a namespace's runs newest first.
CREATE INDEX runs_namespace_created ON runs (namespace, created_at DESC);
-- Counters: the last error of a playbook.
CREATE INDEX runs_last_error ON runs (namespace, playbook, finished_at DESC)
    WHERE status IN ('failed', 'dead');

CREATE TABLE action_journal (
    run_id      uuid        NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    -- The n-th @action call of the run (from 0), stable across attempts of one run.
    seq         integer     NOT NULL CHECK (seq >= 0),
    action      text        NOT NULL,
    status      text        NOT NULL CHECK (status IN ('succeeded', 'failed')),
    attempt     integer     NOT NULL,
    -- Bounded in size by the writer (journal.py); over the bound a marker instead.
    result      jsonb,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, seq)
);

-- Expiring keys. A live row is one whose expires_at is in the future; an
-- expired row is reclaimed in place by the next INSERT ... ON CONFLICT and
-- removed in bulk by purge_expired().
CREATE TABLE dedup_keys (
    key        bytea       PRIMARY KEY,
    alert_id   uuid        NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX dedup_keys_expires ON dedup_keys (expires_at);

CREATE TABLE replay_keys (
    key        bytea       PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX replay_keys_expires ON replay_keys (expires_at);

-- A token bucket per key (e.g. namespace/source): tokens left at updated_at;
-- granted: whether the last take got a token (read back by the same statement).
CREATE TABLE rate_limits (
    key        text        PRIMARY KEY,
    tokens     double precision NOT NULL,
    granted    boolean     NOT NULL,
    updated_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX rate_limits_expires ON rate_limits (expires_at);
