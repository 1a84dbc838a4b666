{{/*
RBAC rules, declared once and bound either cluster-wide (rbac.scope=cluster)
or per tenant namespace (rbac.scope=namespaced). Nothing here grants pods
create, namespaces delete, or any verb on RBAC objects.
*/}}

{{/*
What the operator needs inside a tenant namespace.
*/}}
{{- define "kubesoar.operatorTenantRules" -}}
# The resources it reconciles. kopf patches finalizers and its annotations.
- apiGroups: ["kubesoar.dev"]
  resources: ["playbooks", "alertsources"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["kubesoar.dev"]
  resources: ["playbooks/status", "alertsources/status"]
  verbs: ["get", "patch", "update"]
# Owner references with blockOwnerDeletion on children (kopf.adopt) need this
# where the OwnerReferencesPermissionEnforcement admission plugin is on.
- apiGroups: ["kubesoar.dev"]
  resources: ["playbooks/finalizers", "alertsources/finalizers"]
  verbs: ["update"]
# kopf turns handler log lines into Events on the resource.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# Git credentials named by Playbook.spec.source.git.secretRef (read by name only).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# The children of each Playbook, written with server-side apply (create +
# patch) and read back (get). Runtime pods come from the Deployment: the
# operator never creates pods itself. Children carry an owner reference to
# their Playbook, so the garbage collector deletes them, not the operator.
- apiGroups: [""]
  resources: ["serviceaccounts", "services"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "create", "patch"]
# Runtime pods' reports and readiness.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{/*
What the router needs inside a tenant namespace.
*/}}
{{- define "kubesoar.routerTenantRules" -}}
# Routes (Playbook status) and ingest endpoints (AlertSources).
- apiGroups: ["kubesoar.dev"]
  resources: ["playbooks", "alertsources"]
  verbs: ["get", "list", "watch"]
# AlertSource counters and conditions.
- apiGroups: ["kubesoar.dev"]
  resources: ["alertsources/status"]
  verbs: ["get", "patch"]
# Bearer tokens and HMAC keys of the AlertSources.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
# Ready runtime endpoints, as ingress controllers find them.
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch"]
{{- end }}
