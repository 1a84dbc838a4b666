-- kubesoar system of record, version 4: human approvals.
-- A run whose playbook awaits `ctx.approval(...)` is parked as 'waiting' (not leased:
-- no token, no lease) with what it waits for in `approval`. A person's decision, or
-- the expiry at `approval_expires_at`, is written to the action journal under the
-- call's number and queues the run again; `resumes` counts those continuations (each
-- is a new request to a runtime pod with the same attempt). A refused approval that
-- the playbook does not catch ends the run 'denied'.
-- Additive: a router of version 3 keeps working on this schema.

ALTER TABLE runs DROP CONSTRAINT runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check CHECK (
    status IN ('queued', 'running', 'waiting', 'succeeded', 'failed', 'dead', 'denied'));
-- {seq, title, details, ttlSeconds, requestedAt, expiresAt, decision?}
ALTER TABLE runs ADD COLUMN approval jsonb;
ALTER TABLE runs ADD COLUMN approval_expires_at timestamptz;
ALTER TABLE runs ADD COLUMN resumes integer NOT NULL DEFAULT 0;
ALTER TABLE runs ADD CONSTRAINT runs_waiting_expires
    CHECK ((status = 'waiting') = (approval_expires_at IS NOT NULL));
-- The expiry sweep: waiting runs by the end of their approval's TTL.
CREATE INDEX runs_approvals ON runs (approval_expires_at) WHERE status = 'waiting';
