{{/*
Names and labels shared by every manifest of the chart.
*/}}

{{/* The application name, e.g. "lakehouse". */}}
{{- define "app.name" -}}
{{- required "app.name is required" .Values.app.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Base name of the chart's objects: the release name when it already contains the
application name, otherwise "<release>-<app>"; kept short enough for a suffix.
*/}}
{{- define "app.fullname" -}}
{{- $name := include "app.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 54 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Name of one component's objects. Call with (dict "root" $ "component" "backend"). */}}
{{- define "app.componentName" -}}
{{- printf "%s-%s" (include "app.fullname" .root) .component -}}
{{- end -}}

{{- define "app.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select a component's pods; never change them on upgrade. */}}
{{- define "app.selectorLabels" -}}
app.kubernetes.io/name: {{ include "app.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Full label set of a component's objects. */}}
{{- define "app.labels" -}}
{{ include "app.selectorLabels" . }}
app.kubernetes.io/part-of: {{ include "app.name" .root }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ include "app.chart" .root }}
{{- end -}}

{{/*
The values a render cannot go on without. Fails with a message that names the key.
*/}}
{{- define "app.validate" -}}
{{- $cloud := .Values.global.cloudProvider -}}
{{- if not (has $cloud (list "aws" "gcp")) -}}
{{- fail (printf "global.cloudProvider must be \"aws\" or \"gcp\", found %q" (toString $cloud)) -}}
{{- end -}}
{{- range $component := list "backend" "frontend" -}}
{{- $tag := toString (index $.Values $component "image" "tag") -}}
{{- if or (eq $tag "") (eq $tag "latest") -}}
{{- fail (printf "%s.image.tag must be a pinned version, found %q" $component $tag) -}}
{{- end -}}
{{- end -}}
{{- range $key, $_ := .Values.secretEnv -}}
{{- if hasKey ($.Values.env | default dict) $key -}}
{{- fail (printf "%s is set in both env and secretEnv; keep it in one of them" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Environment of both containers: env (plain values) then secretEnv (Secret
references), each sorted by name (Go templates range over map keys in order).
*/}}
{{- define "app.env" -}}
{{- range $key, $value := .Values.env }}
- name: {{ $key }}
  value: {{ toString $value | quote }}
{{- end }}
{{- range $key, $entry := .Values.secretEnv }}
{{- /* {name, key}, or strata's workload shape {secretRef: {name, key}}. */}}
{{- $ref := $entry.secretRef | default $entry }}
- name: {{ $key }}
  valueFrom:
    secretKeyRef:
      name: {{ required (printf "secretEnv.%s.name is required" $key) $ref.name }}
      key: {{ required (printf "secretEnv.%s.key is required" $key) $ref.key }}
{{- end }}
{{- end -}}

{{/*
The pods' ServiceAccount: serviceAccount.name, which must be given when the
ServiceAccount comes from elsewhere (strata's platform chart); the chart's full
name when the chart creates it and no name is given.
*/}}
{{- define "app.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "app.fullname" .) -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Pod-level security: non-root with fixed numeric ids, default seccomp profile. */}}
{{- define "app.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container-level security: read-only root, no privilege escalation, no capabilities. */}}
{{- define "app.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
One component's Deployment. Call with
(dict "root" $ "component" "backend" "spec" .Values.backend "mountStorage" true).
The backend mounts the data bucket's PVC; on gcp its pod asks GKE for the GCS FUSE
sidecar, which S3 Mountpoint on aws does not need.
*/}}
{{- define "app.deployment" -}}
{{- $root := .root -}}
{{- $spec := .spec -}}
{{- $storage := $root.Values.storage -}}
{{- $gcsFuse := and .mountStorage (eq $root.Values.global.cloudProvider "gcp") -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "app.componentName" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "app.labels" . | nindent 4 }}
spec:
  replicas: {{ $spec.replicas }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "app.selectorLabels" . | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  template:
    metadata:
      labels:
        {{- include "app.labels" . | nindent 8 }}
      {{- if $gcsFuse }}
      annotations:
        gke-gcsfuse/volumes: "true"
      {{- end }}
    spec:
      serviceAccountName: {{ include "app.serviceAccountName" $root }}
      {{- /* Cloud credentials come from IRSA / Pod Identity / Workload Identity,
      which project their own tokens; the app never talks to the Kubernetes API. */}}
      automountServiceAccountToken: false
      securityContext:
        {{- include "app.podSecurityContext" . | nindent 8 }}
      terminationGracePeriodSeconds: 30
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "app.selectorLabels" . | nindent 14 }}
      containers:
        - name: {{ .component }}
          image: "{{ $spec.image.repository }}:{{ $spec.image.tag }}"
          imagePullPolicy: {{ $spec.image.pullPolicy | default "IfNotPresent" }}
          ports:
            - name: http
              containerPort: {{ $spec.port }}
              protocol: TCP
          {{- with (include "app.env" $root | trim) }}
          env:
            {{- . | nindent 12 }}
          {{- end }}
          livenessProbe:
            httpGet:
              path: {{ $spec.probes.livenessPath }}
              port: http
            initialDelaySeconds: 10
            periodSeconds: 10
            timeoutSeconds: 3
            failureThreshold: 3
          readinessProbe:
            httpGet:
              path: {{ $spec.probes.readinessPath }}
              port: http
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 3
          resources:
            {{- toYaml $spec.resources | nindent 12 }}
          securityContext:
            {{- include "app.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if .mountStorage }}
            - name: data
              mountPath: {{ $storage.mountPath }}
              readOnly: {{ $storage.readOnly | default false }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 256Mi
        {{- if .mountStorage }}
        - name: data
          persistentVolumeClaim:
            claimName: {{ required "storage.claimName is required" $storage.claimName }}
            readOnly: {{ $storage.readOnly | default false }}
        {{- end }}
{{- end -}}
