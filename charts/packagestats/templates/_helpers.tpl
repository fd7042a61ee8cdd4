{{/* The chart's name, shortened to fit a DNS label. */}}
{{- define "packagestats.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of the release's objects. */}}
{{- define "packagestats.fullname" -}}
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

{{- define "packagestats.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "packagestats.selectorLabels" -}}
app.kubernetes.io/name: {{ include "packagestats.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "packagestats.labels" -}}
helm.sh/chart: {{ include "packagestats.chart" . }}
{{ include "packagestats.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "packagestats.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "packagestats.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "packagestats.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The rules of the operator on its own resource, in every mode (see rbac.yaml for why each is there).
*/}}
{{- define "packagestats.resourceRules" -}}
- apiGroups: ["packagestats.dev"]
  resources: ["packagestats"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["packagestats.dev"]
  resources: ["packagestats/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "get", "patch"]
{{- end }}

{{/*
The history database URL as text (empty: none or from the Secret); a PVC alone means the SQLite default.
*/}}
{{- define "packagestats.historyUrl" -}}
{{- if .Values.history.url }}{{ .Values.history.url }}
{{- else if .Values.history.persistence.enabled }}sqlite:////var/lib/packagestats/history.db
{{- end }}
{{- end }}

{{/*
Whether /var/lib/packagestats is mounted: a PVC, or an emptyDir under a SQLite file.
*/}}
{{- define "packagestats.historyVolume" -}}
{{- if .Values.history.persistence.enabled }}pvc
{{- else if and (not .Values.history.existingSecret.name) (hasPrefix "sqlite" (include "packagestats.historyUrl" .)) }}emptyDir
{{- end }}
{{- end }}

{{/*
Seconds of a Prometheus duration made of w, d, h, m and s ("3h", "1d12h"), as the schema allows them
(prometheusRule.staleAfter). PromQL compares with numbers, so the alerts use seconds.
*/}}
{{- define "packagestats.durationSeconds" -}}
{{- $total := 0 }}
{{- range $unit, $factor := dict "w" 604800 "d" 86400 "h" 3600 "m" 60 "s" 1 }}
{{- with regexFind (printf "[0-9]+%s" $unit) $ }}
{{- $total = add $total (mul (trimSuffix $unit . | atoi) $factor) }}
{{- end }}
{{- end }}
{{- $total }}
{{- end }}
