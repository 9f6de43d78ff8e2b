{{/*
Names and labels.
*/}}
{{- define "petrel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "petrel.fullname" -}}
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

{{- define "petrel.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The services in start order (store first: the others call it). Every
per-service template ranges over this list and skips disabled services.
*/}}
{{- define "petrel.services" -}}
store delivery smtp imap pop3
{{- end }}

{{/* Services that face mail clients and get the TLS certificate, the PROXY
protocol settings and a mail Service. */}}
{{- define "petrel.mailServices" -}}
smtp imap pop3
{{- end }}

{{- define "petrel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "petrel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "petrel.labels" -}}
helm.sh/chart: {{ include "petrel.chart" . }}
{{ include "petrel.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: petrel
{{- end }}

{{/*
Per-service helpers take a dict: root (the chart's top context), name (the
service name) and svc (its values).
*/}}
{{- define "petrel.svc.fullname" -}}
{{- printf "%s-%s" (include "petrel.fullname" .root) .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "petrel.svc.selectorLabels" -}}
{{ include "petrel.selectorLabels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{- define "petrel.svc.labels" -}}
{{ include "petrel.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{- define "petrel.svc.image" -}}
{{- $img := .root.Values.image -}}
{{- printf "%s/petrel-%s:%s" $img.registry .name (default .root.Chart.AppVersion $img.tag) }}
{{- end }}

{{- define "petrel.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "petrel.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
petrel.envWord turns a flag name into its environment form as
platform/config does: upper case, every other character "_".
*/}}
{{- define "petrel.envWord" -}}
{{- regexReplaceAll "[^A-Z0-9]" (upper .) "_" }}
{{- end }}

{{/* PETREL_<SERVICE>_<FLAG>; takes (list service flag). */}}
{{- define "petrel.svcEnv" -}}
{{- printf "PETREL_%s_%s" (include "petrel.envWord" (index . 0)) (include "petrel.envWord" (index . 1)) }}
{{- end }}

{{- define "petrel.svc.shutdownGrace" -}}
{{- if hasKey .svc "shutdownGraceSeconds" }}{{ .svc.shutdownGraceSeconds }}{{ else }}{{ .root.Values.shutdownGraceSeconds }}{{ end }}
{{- end }}

{{/* Whether a service is one of the mail-facing ones. */}}
{{- define "petrel.svc.isMail" -}}
{{- if has .name (splitList " " (include "petrel.mailServices" .root)) }}true{{ end }}
{{- end }}

{{/* The address the store's clients dial: the headless Service, so that
gRPC's DNS resolver sees every store pod and balances calls over them
(one ClusterIP connection would pin a client to a single pod). */}}
{{- define "petrel.storeAddr" -}}
{{- $store := dict "root" . "name" "store" "svc" .Values.store -}}
{{- printf "dns:///%s-headless.%s.svc:%v" (include "petrel.svc.fullname" $store) .Release.Namespace .Values.store.listeners.grpc.port }}
{{- end }}

{{/*
petrel.svc.env is every environment variable of a service's container.

Listener addresses and settings given per service use the service-scoped
PETREL_<SERVICE>_* names. Dependencies use the shared PETREL_* names (as
scripts/run.sh does) and reach only the services that need them; a shared
variable that a binary does not declare is ignored, so the chart can hand
out a dependency before every service reads it. The store address is never
given to store itself, whose prefix PETREL_STORE_ it would collide with.
*/}}
{{- define "petrel.svc.env" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $name := .name -}}
{{- $svc := .svc -}}
- name: {{ include "petrel.svcEnv" (list $name $svc.metrics.flag) }}
  value: {{ printf "%s:%v" $v.bindAddress $svc.metrics.containerPort | quote }}
{{- range $lname, $l := $svc.listeners }}
{{- if $l.flag }}
- name: {{ include "petrel.svcEnv" (list $name $l.flag) }}
  value: {{ printf "%s:%v" $v.bindAddress $l.containerPort | quote }}
{{- end }}
{{- end }}
- name: {{ include "petrel.svcEnv" (list $name "shutdown-grace") }}
  value: {{ printf "%ss" (include "petrel.svc.shutdownGrace" .) | quote }}
{{- range $k, $val := $svc.config }}
- name: {{ include "petrel.svcEnv" (list $name $k) }}
  value: {{ $val | toString | quote }}
{{- end }}
{{- if eq $name "store" }}
{{- if $v.postgres.existingSecret }}
- name: PETREL_POSTGRES_URL
  valueFrom:
    secretKeyRef:
      name: {{ $v.postgres.existingSecret }}
      key: {{ $v.postgres.urlKey }}
{{- end }}
{{- if $v.auth.tokenKeysSecret }}
- name: PETREL_TOKEN_KEYS_DIR
  value: /etc/petrel/token-keys
{{- end }}
{{- if $v.encryption.existingSecret }}
- name: PETREL_ENCRYPTION_KEY_FILE
  value: {{ printf "/etc/petrel/encryption/%s" $v.encryption.key | quote }}
{{- end }}
{{- else }}
- name: PETREL_STORE_ADDR
  value: {{ include "petrel.storeAddr" $root | quote }}
{{- if $v.auth.serviceTokensSecret }}
- name: PETREL_SERVICE_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $v.auth.serviceTokensSecret }}
      key: {{ $name }}
{{- end }}
{{- end }}
{{- with $v.s3 }}
{{- if .endpoint }}
- name: PETREL_S3_ENDPOINT
  value: {{ .endpoint | quote }}
{{- end }}
{{- if .region }}
- name: PETREL_S3_REGION
  value: {{ .region | quote }}
{{- end }}
- name: PETREL_S3_BUCKET
  value: {{ .bucket | quote }}
- name: PETREL_S3_TLS
  value: {{ .tls | toString | quote }}
{{- if .existingSecret }}
- name: PETREL_S3_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .accessKeyKey }}
- name: PETREL_S3_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .secretKeyKey }}
{{- end }}
{{- end }}
- name: PETREL_NATS_URL
  value: {{ $v.nats.url | quote }}
{{- if $v.nats.credentialsSecret }}
- name: PETREL_NATS_CREDS
  value: {{ printf "/etc/petrel/nats/%s" $v.nats.credentialsKey | quote }}
{{- end }}
{{- if include "petrel.svc.isMail" . }}
{{- if $v.tls.existingSecret }}
- name: PETREL_TLS_CERT
  value: /etc/petrel/tls/tls.crt
- name: PETREL_TLS_KEY
  value: /etc/petrel/tls/tls.key
{{- end }}
{{- with $v.proxyProtocol.trustedCIDRs }}
- name: PETREL_PROXY_PROTOCOL_TRUSTED
  value: {{ join "," . | quote }}
{{- end }}
{{- end }}
{{- with $svc.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Secret volumes of a service: mounted as directories, never subPath, so
that rotated Secrets reach running pods. */}}
{{- define "petrel.svc.volumes" -}}
{{- $v := .root.Values -}}
- name: tmp
  emptyDir: {}
{{- if and (eq .name "store") $v.auth.tokenKeysSecret }}
- name: token-keys
  secret:
    secretName: {{ $v.auth.tokenKeysSecret }}
    defaultMode: 0440
{{- end }}
{{- if and (eq .name "store") $v.encryption.existingSecret }}
- name: encryption
  secret:
    secretName: {{ $v.encryption.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- if $v.nats.credentialsSecret }}
- name: nats
  secret:
    secretName: {{ $v.nats.credentialsSecret }}
    defaultMode: 0440
{{- end }}
{{- if and (include "petrel.svc.isMail" .) $v.tls.existingSecret }}
- name: tls
  secret:
    secretName: {{ $v.tls.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{- define "petrel.svc.volumeMounts" -}}
{{- $v := .root.Values -}}
- name: tmp
  mountPath: /tmp
{{- if and (eq .name "store") $v.auth.tokenKeysSecret }}
- name: token-keys
  mountPath: /etc/petrel/token-keys
  readOnly: true
{{- end }}
{{- if and (eq .name "store") $v.encryption.existingSecret }}
- name: encryption
  mountPath: /etc/petrel/encryption
  readOnly: true
{{- end }}
{{- if $v.nats.credentialsSecret }}
- name: nats
  mountPath: /etc/petrel/nats
  readOnly: true
{{- end }}
{{- if and (include "petrel.svc.isMail" .) $v.tls.existingSecret }}
- name: tls
  mountPath: /etc/petrel/tls
  readOnly: true
{{- end }}
{{- end }}

{{/*
petrel.validate stops rendering on values that would give a broken install.
*/}}
{{- define "petrel.validate" -}}
{{- range $k, $_ := .Values.config }}
{{- $word := include "petrel.envWord" $k }}
{{- range splitList " " (include "petrel.services" $) }}
{{- if hasPrefix (printf "%s_" (upper .)) $word }}
{{- fail (printf "config.%s: shared setting PETREL_%s would be read as a petrel-%s setting; set it under %s.config instead" $k $word . .) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $name := splitList " " (include "petrel.services" .) }}
{{- $svc := index $.Values $name }}
{{- $chartSet := list $svc.metrics.flag "shutdown-grace" }}
{{- range $_, $l := $svc.listeners }}{{ if $l.flag }}{{ $chartSet = append $chartSet $l.flag }}{{ end }}{{ end }}
{{- range $k, $_ := $svc.config }}
{{- if has $k $chartSet }}
{{- fail (printf "%s.config.%s: the chart sets this from %s's listeners, metrics or shutdownGraceSeconds; change those instead" $name $k $name) }}
{{- end }}
{{- end }}
{{- if and $svc.enabled $svc.autoscaling.enabled (gt (int $svc.autoscaling.minReplicas) (int $svc.autoscaling.maxReplicas)) }}
{{- fail (printf "%s.autoscaling: minReplicas is greater than maxReplicas" $name) }}
{{- end }}
{{- end }}
{{- end }}

{{/* A Service's ports for a service's listeners; NodePort numbers come from
service.nodePorts when the mail Service is a NodePort or LoadBalancer. */}}
{{- define "petrel.svc.servicePorts" -}}
{{- $s := default dict .svc.service -}}
{{- range $lname, $l := .svc.listeners }}
- name: {{ $lname }}
  port: {{ $l.port }}
  targetPort: {{ $lname }}
  protocol: TCP
  {{- with $l.appProtocol }}
  appProtocol: {{ . }}
  {{- end }}
  {{- if and $s.nodePorts (ne (default "ClusterIP" $s.type) "ClusterIP") (hasKey $s.nodePorts $lname) }}
  nodePort: {{ index $s.nodePorts $lname }}
  {{- end }}
{{- end }}
{{- end }}
