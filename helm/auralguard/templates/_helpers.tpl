{{/*
Names. The operator's objects share one full name: "<release>-auralguard-operator", shortened
to "<release>-operator" when the release name already says auralguard (the usual
`helm install auralguard ...`), and cut to 63 characters (the DNS label limit).
*/}}
{{- define "auralguard.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "auralguard.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s-operator" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "auralguard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries (recommended app.kubernetes.io set). */}}
{{- define "auralguard.labels" -}}
helm.sh/chart: {{ include "auralguard.chart" . }}
{{ include "auralguard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: auralguard
{{- end }}

{{/* Selector labels: stable across upgrades (a Deployment's selector is immutable). */}}
{{- define "auralguard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "auralguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "auralguard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "auralguard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "auralguard.operatorImage" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The detector image handed to the operator (GPU detectors append "-cuda" to the tag). */}}
{{- define "auralguard.detectorImage" -}}
{{- printf "%s:%s" .Values.detectorImage.repository (default .Chart.AppVersion .Values.detectorImage.tag) }}
{{- end }}

{{/*
RBAC rules for the namespaced resources the operator manages. Rendered into a ClusterRole when
it watches all namespaces, into a Role in watchNamespace otherwise: one list, two scopes.
*/}}
{{- define "auralguard.managedRules" -}}
- apiGroups: ["auralguard.io"]
  resources: ["audiodetectors"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["auralguard.io"]
  resources: ["audiodetectors/status"]
  verbs: ["get", "patch", "update"]
# Only needed to set or clear a finalizer on AudioDetectors.
- apiGroups: ["auralguard.io"]
  resources: ["audiodetectors/finalizers"]
  verbs: ["update"]
# The objects derived from each AudioDetector (stable + canary Deployments, Service, HPA, PDB,
# ServiceMonitor), applied with server-side apply and pruned when no longer wanted.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# Canary analysis scrapes the canary pods' /metrics directly, so it needs to find them.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# MLflow credentials referenced by an AudioDetector (read by name, never listed).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# One Event per rollout transition.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
