{{/* Names and labels of the backend chart. The release name is the process name. */}}

{{- define "backend.fullname" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "backend.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "backend.labels" -}}
{{ include "backend.selectorLabels" . }}
app.kubernetes.io/part-of: shop
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
shop.example.com/environment: {{ .Values.global.environment | quote }}
{{- end -}}

{{- define "backend.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "backend.fullname" .) -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "backend.image" -}}
{{- $tag := toString .Values.image.tag -}}
{{- if or (eq $tag "") (eq $tag "latest") -}}
{{- fail (printf "image.tag must be a pinned version, found %q" $tag) -}}
{{- end -}}
{{- printf "%s/%s:%s" (required "global.imageRegistry is required" .Values.global.imageRegistry) .Values.image.name $tag -}}
{{- end -}}

{{/*
Container environment: env (as given), extraEnv (through tpl), then secretEnv;
each sorted by name. A name in two of them fails the render.
*/}}
{{- define "backend.env" -}}
{{- $root := . -}}
{{- $seen := dict -}}
{{- range $map := list "env" "extraEnv" "secretEnv" -}}
{{- range $key, $_ := (index $root.Values $map) -}}
{{- if hasKey $seen $key -}}
{{- fail (printf "%s is set in both %s and %s; keep it in one of them" $key (get $seen $key) $map) -}}
{{- end -}}
{{- $_ := set $seen $key $map -}}
{{- end -}}
{{- end -}}
{{- range $key, $value := .Values.env }}
- name: {{ $key }}
  value: {{ toString $value | quote }}
{{- end }}
{{- range $key, $value := .Values.extraEnv }}
- name: {{ $key }}
  value: {{ tpl (toString $value) $root | quote }}
{{- end }}
{{- range $key, $entry := .Values.secretEnv }}
{{- $ref := $entry.secretRef | default $entry }}
- name: {{ $key }}
  valueFrom:
    secretKeyRef:
      name: {{ required (printf "secretEnv.%s.name is required" $key) $ref.name }}
      key: {{ required (printf "secretEnv.%s.key is required" $key) $ref.key }}
{{- end }}
{{- end -}}
