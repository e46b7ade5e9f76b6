{{/* The chart's name, or nameOverride. */}}
{{- define "academy-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's object name: fullnameOverride, else release-chart (the release alone when it contains the chart name). */}}
{{- define "academy-gateway.fullname" -}}
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

{{/* Labels every object carries. */}}
{{- define "academy-gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "academy-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: academy-gateway
{{- end }}

{{/* Labels that select the gateway's pods. */}}
{{- define "academy-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "academy-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels that select the gateway's pods only (not the helm test pod). */}}
{{- define "academy-gateway.podSelectorLabels" -}}
{{ include "academy-gateway.selectorLabels" . }}
app.kubernetes.io/component: gateway
{{- end }}

{{/* The Secret the gateway reads its secrets from. */}}
{{- define "academy-gateway.secretName" -}}
{{- default (include "academy-gateway.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{- define "academy-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "academy-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The port of a listen address (":8080", "127.0.0.1:8080" → 8080). */}}
{{- define "academy-gateway.port" -}}
{{- splitList ":" . | last }}
{{- end }}

{{/* Whether a listen address is loopback only (not reachable from outside the pod). */}}
{{- define "academy-gateway.loopback" -}}
{{- if or (hasPrefix "127." .) (hasPrefix "localhost:" .) (hasPrefix "[::1]:" .) }}true{{- end }}
{{- end }}

{{/* The image reference. */}}
{{- define "academy-gateway.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Where the configuration file is mounted. */}}
{{- define "academy-gateway.configFile" -}}
/etc/academy-gateway/config/config.yaml
{{- end }}

{{/* The gateway's configuration file: config, with the paths of the mounted TLS files. */}}
{{- define "academy-gateway.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- if .Values.tls.secretName }}
{{- $listen := get $cfg "listen" | default dict }}
{{- $_ := set $listen "tls_cert_file" "/etc/academy-gateway/tls/tls.crt" }}
{{- $_ := set $listen "tls_key_file" "/etc/academy-gateway/tls/tls.key" }}
{{- $_ := set $cfg "listen" $listen }}
{{- end }}
{{- if .Values.redisCA.secretName }}
{{- $redis := get $cfg "redis" | default dict }}
{{- $_ := set $redis "tls_ca_file" (printf "/etc/academy-gateway/redis-ca/%s" .Values.redisCA.key) }}
{{- $_ := set $cfg "redis" $redis }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/* The gateway container's environment: the secrets, as ACADEMY_GATEWAY_* overrides. */}}
{{- define "academy-gateway.env" -}}
- name: ACADEMY_GATEWAY_OAUTH_CLIENT_SECRET
  valueFrom:
    secretKeyRef: {name: {{ include "academy-gateway.secretName" . }}, key: client-secret}
- name: ACADEMY_GATEWAY_SECURITY_ENCRYPTION_KEYS
  valueFrom:
    secretKeyRef: {name: {{ include "academy-gateway.secretName" . }}, key: encryption-keys}
{{- range $var, $key := dict "ACADEMY_GATEWAY_SECURITY_ADMIN_TOKEN" "admin-token" "ACADEMY_GATEWAY_WEBHOOKS_SECRET" "webhook-secret" "ACADEMY_GATEWAY_SECURITY_FORWARD_AUTH_TOKEN" "forward-auth-token" "ACADEMY_GATEWAY_REDIS_URL" "redis-url" }}
- name: {{ $var }}
  valueFrom:
    secretKeyRef: {name: {{ include "academy-gateway.secretName" $ }}, key: {{ $key }}, optional: true}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The gateway container's mounts: the configuration and, when set, the TLS files. */}}
{{- define "academy-gateway.volumeMounts" -}}
# Siblings, not nested in one another: a mount point inside a read-only ConfigMap volume cannot be made.
- name: config
  mountPath: /etc/academy-gateway/config
  readOnly: true
{{- if .Values.tls.secretName }}
# No subPath: the kubelet then updates the files in place when the Secret changes.
- name: tls
  mountPath: /etc/academy-gateway/tls
  readOnly: true
{{- end }}
{{- if .Values.redisCA.secretName }}
- name: redis-ca
  mountPath: /etc/academy-gateway/redis-ca
  readOnly: true
{{- end }}
{{- end }}

{{/* The volumes behind academy-gateway.volumeMounts. */}}
{{- define "academy-gateway.volumes" -}}
- name: config
  configMap:
    name: {{ include "academy-gateway.fullname" . }}
{{- if .Values.tls.secretName }}
- name: tls
  secret:
    secretName: {{ .Values.tls.secretName }}
{{- end }}
{{- if .Values.redisCA.secretName }}
- name: redis-ca
  secret:
    secretName: {{ .Values.redisCA.secretName }}
{{- end }}
{{- end }}
