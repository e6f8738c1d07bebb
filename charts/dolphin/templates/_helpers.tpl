{{/*
Names and labels shared by every template.
*/}}

{{/* The release's base name: the release name, or RELEASE-dolphin when it lacks "dolphin". */}}
{{- define "dolphin.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 54 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The operator's objects: dolphin-operator for a release named dolphin. */}}
{{- define "dolphin.operator" -}}
{{- printf "%s-operator" (include "dolphin.fullname" .) -}}
{{- end -}}

{{- define "dolphin.serviceAccountName" -}}
{{- default (include "dolphin.operator" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* Labels of every object of the release. */}}
{{- define "dolphin.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dolphin
{{- end -}}

{{/*
What selects the operator's pods. The name must stay dolphin-operator: the NetworkPolicy the
operator renders for each cluster admits pods with that label to the replicas' admin API.
*/}}
{{- define "dolphin.operatorSelector" -}}
app.kubernetes.io/name: dolphin-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "dolphin.operatorLabels" -}}
{{ include "dolphin.labels" . }}
app.kubernetes.io/name: dolphin-operator
app.kubernetes.io/component: operator
{{- end -}}

{{- define "dolphin.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if hasPrefix "sha256:" $tag -}}
{{- printf "%s@%s" .Values.image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}
