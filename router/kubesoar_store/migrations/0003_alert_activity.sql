-- kubesoar system of record, version 3: what people (and playbooks) do with an alert.
-- The runs.kubesoar.dev API (kubectl get/patch alerts) changes an alert's status,
-- determination and assignee and adds comments; each change is one activity row
-- naming who made it: the authenticated Kubernetes user the aggregator vouched for,
-- or a playbook run. Comments are activity rows of kind 'comment'.

ALTER TABLE alerts ADD COLUMN resolved_at timestamptz;

CREATE TABLE alert_activity (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id    uuid        NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now(),
    -- "user:<name>" for a Kubernetes user, "run:<id>" for a playbook run.
    actor       text        NOT NULL,
    kind        text        NOT NULL
                CHECK (kind IN ('status', 'determination', 'assignee', 'comment')),
    old_value   text,
    new_value   text
);
CREATE INDEX alert_activity_alert ON alert_activity (alert_id, id);
