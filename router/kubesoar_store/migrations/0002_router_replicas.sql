-- kubesoar system of record, version 2: the router replicas that take run reports.
-- A runtime pod reports a run to the replica that dispatched it, and to the others
-- when that one is gone (a rolling upgrade, a killed pod): each replica announces
-- the URL pods reach it at, and the dispatcher hands the live ones out with each run.

CREATE TABLE router_replicas (
    owner       text        PRIMARY KEY,
    report_url  text        NOT NULL,
    seen_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX router_replicas_seen ON router_replicas (seen_at);
