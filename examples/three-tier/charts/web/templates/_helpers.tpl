{{/* Names and labels of the web chart. */}}

{{- define "web.fullname" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "web.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "web.labels" -}}
{{ include "web.selectorLabels" . }}
app.kubernetes.io/part-of: shop
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
shop.example.com/environment: {{ .Values.global.environment | quote }}
{{- end -}}

{{- define "web.image" -}}
{{- $tag := toString .Values.image.tag -}}
{{- if or (eq $tag "") (eq $tag "latest") -}}
{{- fail (printf "image.tag must be a pinned version, found %q" $tag) -}}
{{- end -}}
{{- printf "%s/%s:%s" (required "global.imageRegistry is required" .Values.global.imageRegistry) .Values.image.name $tag -}}
{{- end -}}
