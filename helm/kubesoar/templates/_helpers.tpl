{{/*
Chart name, truncated to 63 characters (the DNS label limit).
*/}}
{{- define "kubesoar.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the release name, plus the chart name unless the release name
already contains it. Truncated to 63 characters.
*/}}
{{- define "kubesoar.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Name of a component's objects: <fullname>-<component>, within 63 characters.
Usage: include "kubesoar.componentName" (list . "operator")
*/}}
{{- define "kubesoar.componentName" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 }}
{{- printf "%s-%s" (include "kubesoar.fullname" $root | trunc (int (sub 62 (len $component))) | trimSuffix "-") $component }}
{{- end }}

{{- define "kubesoar.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "kubesoar.labels" -}}
helm.sh/chart: {{ include "kubesoar.chart" . }}
{{ include "kubesoar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubesoar
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels (stable across upgrades: never add to them).
*/}}
{{- define "kubesoar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubesoar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels and selector labels of one component.
Usage: include "kubesoar.componentLabels" (list . "router")
*/}}
{{- define "kubesoar.componentLabels" -}}
{{ include "kubesoar.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "kubesoar.componentSelectorLabels" -}}
{{ include "kubesoar.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/*
ServiceAccount name of a component.
Usage: include "kubesoar.serviceAccountName" (list . "operator")
*/}}
{{- define "kubesoar.serviceAccountName" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 }}
{{- $sa := (index $root.Values $component).serviceAccount }}
{{- if $sa.create }}
{{- default (include "kubesoar.componentName" (list $root $component)) $sa.name }}
{{- else }}
{{- default "default" $sa.name }}
{{- end }}
{{- end }}

{{/*
The image reference: repository@digest, or repository:tag (tag defaults to appVersion).
*/}}
{{- define "kubesoar.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Tenant namespaces, validated: "namespaced" scope needs at least one.
*/}}
{{- define "kubesoar.tenantNamespaces" -}}
{{- if eq .Values.rbac.scope "namespaced" }}
{{- if not .Values.rbac.tenantNamespaces }}
{{- fail "rbac.scope=namespaced needs at least one namespace in rbac.tenantNamespaces" }}
{{- end }}
{{- toJson (uniq .Values.rbac.tenantNamespaces) }}
{{- else }}
{{- toJson (list) }}
{{- end }}
{{- end }}

{{/*
Arguments that tell the operator and the router which namespaces to serve;
they must agree with the RBAC the chart grants. The operator says "every
namespace" with --all-namespaces, the router with --namespace=all.
Usage: include "kubesoar.namespaceArgs" (list . "router")
*/}}
{{- define "kubesoar.namespaceArgs" -}}
{{- $root := index . 0 }}
{{- if eq $root.Values.rbac.scope "cluster" }}
{{- if eq (index . 1) "router" }}
- --namespace=all
{{- else }}
- --all-namespaces
{{- end }}
{{- else }}
{{- range (include "kubesoar.tenantNamespaces" $root | fromJsonArray) }}
- --namespace={{ . }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The restricted Pod Security Standard, shared by the operator and the router.
*/}}
{{- define "kubesoar.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "kubesoar.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Labels of the runtime pods the operator creates (docs/CONTRACTS.md).
*/}}
{{- define "kubesoar.runtimePodLabels" -}}
app.kubernetes.io/name: kubesoar
app.kubernetes.io/component: runtime
app.kubernetes.io/managed-by: kubesoar-operator
{{- end }}

{{/*
The Secret holding the system of record's URL (key "url" unless database.urlKey says
otherwise): database.existingSecret, or the evaluation PostgreSQL's generated one.
Empty when the release runs without a database.
*/}}
{{- define "kubesoar.databaseSecret" -}}
{{- if .Values.database.existingSecret -}}
{{ .Values.database.existingSecret }}
{{- else if .Values.database.postgresql.enabled -}}
{{ include "kubesoar.componentName" (list . "postgresql") }}
{{- end -}}
{{- end }}

{{- define "kubesoar.databaseUrlKey" -}}
{{- if .Values.database.existingSecret -}}{{ .Values.database.urlKey }}{{- else -}}url{{- end -}}
{{- end }}

{{/* The database URL file's volume, for the router, operator and migration pods. */}}
{{- define "kubesoar.databaseVolume" -}}
- name: database
  secret:
    secretName: {{ include "kubesoar.databaseSecret" . }}
    defaultMode: 0440
    items:
      - key: {{ include "kubesoar.databaseUrlKey" . }}
        path: url
{{- end }}
