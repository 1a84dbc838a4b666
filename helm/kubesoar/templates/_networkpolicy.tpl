{{/*
Pieces of the NetworkPolicies of the operator and router pods.
*/}}

{{/*
Runtime pods of every served namespace: all namespaces, or the tenants.
*/}}
{{- define "kubesoar.runtimePeer" -}}
- podSelector:
    matchLabels:
      {{- include "kubesoar.runtimePodLabels" . | nindent 6 }}
  namespaceSelector:
  {{- $tenants := include "kubesoar.tenantNamespaces" . | fromJsonArray }}
  {{- if $tenants }}
    matchExpressions:
      - key: kubernetes.io/metadata.name
        operator: In
        values: {{ toJson $tenants }}
  {{- else }} {}
  {{- end }}
{{- end }}
{{- define "kubesoar.egressTo" -}}
{{- $rule := index . 0 }}
- {{- with $rule.cidrs }}
  to:
    {{- range . }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  {{- end }}
  ports:
    {{- range $rule.ports }}
    - protocol: TCP
      port: {{ . }}
    {{- end }}
{{- end }}
{{- define "kubesoar.dnsEgress" -}}
- ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end }}
{{- define "kubesoar.metricsIngress" -}}
{{- $ := index . 0 }}
- ports:
    - protocol: TCP
      port: metrics
  {{- with $.Values.networkPolicy.metricsFrom }}
  from:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
Egress to the system of record (router, operator, migration Job): the evaluation
PostgreSQL's pods, or database.cidrs (any address when empty) on database.port.
*/}}
{{- define "kubesoar.databaseEgress" -}}
{{- if include "kubesoar.databaseSecret" . }}
# The system of record.
{{- if and .Values.database.postgresql.enabled (not .Values.database.existingSecret) }}
- to:
    - podSelector:
        matchLabels:
          {{- include "kubesoar.componentSelectorLabels" (list . "postgresql") | nindent 10 }}
  ports:
    - protocol: TCP
      port: 5432
{{- else }}
{{- include "kubesoar.egressTo" (list (dict "cidrs" .Values.database.cidrs "ports" (list .Values.database.port))) }}
{{- end }}
{{- end }}
{{- end }}
