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
# Exactly the calls the operator makes (operator/README.md, "RBAC"); no finalizers, no updates:
# everything is written with server-side apply (create + patch).
- apiGroups: ["auralguard.io"]
  resources: ["audiodetectors"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["auralguard.io"]
  resources: ["audiodetectors/status"]
  verbs: ["get", "patch"]
# Stable and canary Deployments; delete removes the canary after a promotion or rollback.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch"]
# delete: when autoscaling is removed from a spec.
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Optional; whether its CRD exists is read from API discovery, which needs no extra rule.
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "create", "patch"]
# Canary analysis lists the ready canary pods and scrapes their /metrics by pod IP.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
# MLflow credentials referenced by an AudioDetector (read by name, never listed).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# One Event per rollout transition.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
