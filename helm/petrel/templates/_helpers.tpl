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

{{/* petrel.envValue is a values entry as a variable's text. Not toString:
YAML numbers arrive as float64 and 104857600 would become "1.048576e+08",
which an int flag rejects; JSON writes numbers without exponent. */}}
{{- define "petrel.envValue" -}}
{{- if kindIs "string" . }}{{ . }}{{ else }}{{ toJson . }}{{ end }}
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

{{/*
petrel.svc.uses lists what a service's binary takes from the chart, as the
binaries of this checkout declare it (petrel-<service> --help):

  postgres   --postgres-url                       (store only: no other
                                                   service holds database
                                                   credentials)
  tokenKeys  --token-key-file                      (store: the HMAC key ring)
  store      --store-addr, --store-token-file      (the store's clients)
  s3         --s3-endpoint, -bucket, -region, -tls, -access-key, -secret-key
  nats       --nats-url
  hostname   --hostname
  tls        --tls-cert-file, --tls-key-file

imap and pop3 take only logging, metrics and shutdown settings so far.
When a binary gains one of these flags, add the word here: scripts/helm.sh
runs every binary with --check-config and the chart's environment, so a
mismatch fails there, not at rollout.
*/}}
{{- define "petrel.svc.uses" -}}
{{- $uses := dict
  "store" "postgres tokenKeys s3 nats"
  "delivery" "store s3 nats hostname"
  "smtp" "store s3 nats hostname tls"
  "imap" ""
  "pop3" "" -}}
{{- index $uses .name }}
{{- end }}

{{/* "true" if the service (ctx) uses the feature named by .feature. */}}
{{- define "petrel.svc.has" -}}
{{- if has .feature (splitList " " (include "petrel.svc.uses" .ctx)) }}true{{ end }}
{{- end }}

{{/* "true" unless the listener sets enabled: false. */}}
{{- define "petrel.listenerOn" -}}
{{- if not (and (hasKey . "enabled") (not .enabled)) }}true{{ end }}
{{- end }}

{{/* Where Secrets are mounted (directories, never subPath). */}}
{{- define "petrel.path.tokenKeys" -}}/etc/petrel/token-keys/token-keys{{- end }}
{{- define "petrel.path.storeToken" -}}/etc/petrel/store-token/token{{- end }}
{{- define "petrel.path.tls" -}}/etc/petrel/tls{{- end }}
{{- define "petrel.path.smarthostPassword" -}}/etc/petrel/smarthost/password{{- end }}

{{/* The service's smarthost values, when it relays through one (delivery
with smarthost.address set); empty otherwise. */}}
{{- define "petrel.svc.smarthost" -}}
{{- if and (eq .name "delivery") .svc.smarthost .svc.smarthost.address }}true{{ end }}
{{- end }}

{{/* The address the store's clients dial: the headless Service, so that
gRPC's DNS resolver sees every store pod (one ClusterIP connection would pin
a client to a single pod). */}}
{{- define "petrel.storeAddr" -}}
{{- $store := dict "root" . "name" "store" "svc" .Values.store -}}
{{- printf "dns:///%s-headless.%s.svc:%v" (include "petrel.svc.fullname" $store) .Release.Namespace .Values.store.listeners.grpc.port }}
{{- end }}

{{/*
petrel.svc.chartEnv is every variable the chart derives for a service from
its values (listeners, dependencies, Secrets); petrel.svc.env adds the
service's own `config` and `extraEnv`.

Every variable is service-scoped (PETREL_<SERVICE>_<FLAG>), never a shared
PETREL_<FLAG>: a binary stops on an unknown service-scoped variable but
silently ignores a shared one it does not declare, so only service-scoped
names let scripts/helm.sh prove that each binary reads what the chart
gives it. It also keeps, for instance, the store address (--store-addr of
smtp and delivery) away from petrel-store, which would read a shared
PETREL_STORE_ADDR as its own setting "addr" and refuse to start.
*/}}
{{- define "petrel.svc.chartEnv" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $name := .name -}}
{{- $svc := .svc -}}
- name: {{ include "petrel.svcEnv" (list $name $svc.metrics.flag) }}
  value: {{ printf "%s:%v" $v.bindAddress $svc.metrics.containerPort | quote }}
{{- range $lname, $l := $svc.listeners }}
{{- if $l.flag }}
- name: {{ include "petrel.svcEnv" (list $name $l.flag) }}
  {{- if include "petrel.listenerOn" $l }}
  value: {{ printf "%s:%v" $v.bindAddress $l.containerPort | quote }}
  {{- else }}
  # Disabled in the values: an empty address turns the listener off.
  value: ""
  {{- end }}
{{- end }}
{{- if and $l.proxyFlag $v.proxyProtocol.trustedCIDRs (include "petrel.listenerOn" $l) }}
- name: {{ include "petrel.svcEnv" (list $name $l.proxyFlag) }}
  value: {{ join "," $v.proxyProtocol.trustedCIDRs | quote }}
{{- end }}
{{- end }}
- name: {{ include "petrel.svcEnv" (list $name "shutdown-grace") }}
  value: {{ printf "%ss" (include "petrel.svc.shutdownGrace" .) | quote }}
{{- if include "petrel.svc.has" (dict "ctx" . "feature" "hostname") }}
- name: {{ include "petrel.svcEnv" (list $name "hostname") }}
  value: {{ $v.hostname | quote }}
{{- end }}
{{- if include "petrel.svc.has" (dict "ctx" . "feature" "postgres") }}
- name: {{ include "petrel.svcEnv" (list $name "postgres-url") }}
  valueFrom:
    secretKeyRef:
      name: {{ $v.postgres.existingSecret }}
      key: {{ $v.postgres.urlKey }}
{{- end }}
{{- if include "petrel.svc.has" (dict "ctx" . "feature" "tokenKeys") }}
- name: {{ include "petrel.svcEnv" (list $name "token-key-file") }}
  value: {{ include "petrel.path.tokenKeys" . | quote }}
{{- end }}
{{- if include "petrel.svc.has" (dict "ctx" . "feature" "store") }}
- name: {{ include "petrel.svcEnv" (list $name "store-addr") }}
  value: {{ include "petrel.storeAddr" $root | quote }}
- name: {{ include "petrel.svcEnv" (list $name "store-token-file") }}
  value: {{ include "petrel.path.storeToken" . | quote }}
{{- end }}
{{- if include "petrel.svc.has" (dict "ctx" . "feature" "s3") }}
{{- with $v.s3 }}
- name: {{ include "petrel.svcEnv" (list $name "s3-endpoint") }}
  value: {{ .endpoint | quote }}
{{- if .region }}
- name: {{ include "petrel.svcEnv" (list $name "s3-region") }}
  value: {{ .region | quote }}
{{- end }}
- name: {{ include "petrel.svcEnv" (list $name "s3-bucket") }}
  value: {{ .bucket | quote }}
- name: {{ include "petrel.svcEnv" (list $name "s3-tls") }}
  value: {{ .tls | toString | quote }}
- name: {{ include "petrel.svcEnv" (list $name "s3-access-key") }}
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .accessKeyKey }}
- name: {{ include "petrel.svcEnv" (list $name "s3-secret-key") }}
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .secretKeyKey }}
{{- end }}
{{- end }}
{{- if include "petrel.svc.has" (dict "ctx" . "feature" "nats") }}
- name: {{ include "petrel.svcEnv" (list $name "nats-url") }}
  value: {{ $v.nats.url | quote }}
{{- end }}
{{- if include "petrel.svc.has" (dict "ctx" . "feature" "tls") }}
- name: {{ include "petrel.svcEnv" (list $name "tls-cert-file") }}
  value: {{ printf "%s/tls.crt" (include "petrel.path.tls" .) | quote }}
- name: {{ include "petrel.svcEnv" (list $name "tls-key-file") }}
  value: {{ printf "%s/tls.key" (include "petrel.path.tls" .) | quote }}
{{- end }}
{{- if include "petrel.svc.smarthost" . }}
{{- with $svc.smarthost }}
- name: {{ include "petrel.svcEnv" (list $name "smarthost") }}
  value: {{ .address | quote }}
- name: {{ include "petrel.svcEnv" (list $name "smarthost-implicit-tls") }}
  value: {{ .implicitTLS | toString | quote }}
{{- if .user }}
- name: {{ include "petrel.svcEnv" (list $name "smarthost-user") }}
  value: {{ .user | quote }}
- name: {{ include "petrel.svcEnv" (list $name "smarthost-password-file") }}
  value: {{ include "petrel.path.smarthostPassword" $root | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "petrel.svc.env" -}}
{{ include "petrel.svc.chartEnv" . }}
{{- $name := .name }}
{{- range $k, $val := .svc.config }}
- name: {{ include "petrel.svcEnv" (list $name $k) }}
  value: {{ include "petrel.envValue" $val | quote }}
{{- end }}
{{- with .svc.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Secret volumes of a service: mounted as directories, never subPath, so
that rotated Secrets reach running pods. Each service gets only the keys
it needs (items). */}}
{{- define "petrel.svc.volumes" -}}
{{- $v := .root.Values -}}
- name: tmp
  emptyDir: {}
{{- if include "petrel.svc.has" (dict "ctx" . "feature" "tokenKeys") }}
- name: token-keys
  secret:
    secretName: {{ $v.auth.tokenKeysSecret }}
    defaultMode: 0440
    items:
      - key: {{ $v.auth.tokenKeysKey }}
        path: {{ base (include "petrel.path.tokenKeys" .) }}
{{- end }}
{{- if include "petrel.svc.has" (dict "ctx" . "feature" "store") }}
- name: store-token
  secret:
    secretName: {{ $v.auth.serviceTokensSecret }}
    defaultMode: 0440
    items:
      # This service's own token only.
      - key: {{ .name }}
        path: {{ base (include "petrel.path.storeToken" .) }}
{{- end }}
{{- if include "petrel.svc.has" (dict "ctx" . "feature" "tls") }}
- name: tls
  secret:
    secretName: {{ $v.tls.existingSecret }}
    defaultMode: 0440
    items:
      - {key: tls.crt, path: tls.crt}
      - {key: tls.key, path: tls.key}
{{- end }}
{{- if and (include "petrel.svc.smarthost" .) .svc.smarthost.user }}
- name: smarthost
  secret:
    secretName: {{ .svc.smarthost.passwordSecret }}
    defaultMode: 0440
    items:
      - key: {{ .svc.smarthost.passwordKey }}
        path: {{ base (include "petrel.path.smarthostPassword" .) }}
{{- end }}
{{- end }}

{{- define "petrel.svc.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if include "petrel.svc.has" (dict "ctx" . "feature" "tokenKeys") }}
- name: token-keys
  mountPath: {{ dir (include "petrel.path.tokenKeys" .) }}
  readOnly: true
{{- end }}
{{- if include "petrel.svc.has" (dict "ctx" . "feature" "store") }}
- name: store-token
  mountPath: {{ dir (include "petrel.path.storeToken" .) }}
  readOnly: true
{{- end }}
{{- if include "petrel.svc.has" (dict "ctx" . "feature" "tls") }}
- name: tls
  mountPath: {{ include "petrel.path.tls" . }}
  readOnly: true
{{- end }}
{{- if and (include "petrel.svc.smarthost" .) .svc.smarthost.user }}
- name: smarthost
  mountPath: {{ dir (include "petrel.path.smarthostPassword" .) }}
  readOnly: true
{{- end }}
{{- end }}

{{/*
petrel.validate stops rendering on values that would give a broken install,
with a message that says which value to set.
*/}}
{{- define "petrel.validate" -}}
{{- $v := .Values }}
{{- range $k, $_ := $v.config }}
{{- $word := include "petrel.envWord" $k }}
{{- range splitList " " (include "petrel.services" $) }}
{{- if hasPrefix (printf "%s_" (upper .)) $word }}
{{- fail (printf "config.%s: shared setting PETREL_%s would be read as a petrel-%s setting; set it under %s.config instead" $k $word . .) }}
{{- end }}
{{- end }}
{{- end }}
{{- $uses := list }}
{{- range $name := splitList " " (include "petrel.services" .) }}
{{- $svc := index $v $name }}
{{- if $svc.enabled }}
{{- $ctx := dict "root" $ "name" $name "svc" $svc }}
{{- $uses = concat $uses (splitList " " (include "petrel.svc.uses" $ctx)) }}
{{- $chartSet := list }}
{{- range (include "petrel.svc.chartEnv" $ctx | fromYamlArray) }}{{ $chartSet = append $chartSet .name }}{{ end }}
{{- range $k, $_ := $svc.config }}
{{- if has (include "petrel.svcEnv" (list $name $k)) $chartSet }}
{{- fail (printf "%s.config.%s: the chart already sets this (from the listeners, metrics, shutdownGraceSeconds, hostname or a dependency's values); change that value instead" $name $k) }}
{{- end }}
{{- end }}
{{- range $svc.extraEnv }}
{{- if has .name $chartSet }}
{{- fail (printf "%s.extraEnv: %s is already set by the chart; change the value it comes from instead" $name .name) }}
{{- end }}
{{- end }}
{{- with $svc.smarthost }}
{{- if and (or .user .passwordSecret) (not .address) }}
{{- fail (printf "%s.smarthost: user and passwordSecret need address (host:port of the relay)" $name) }}
{{- end }}
{{- if and .address (not (regexMatch ":[0-9]+$" .address)) }}
{{- fail (printf "%s.smarthost.address: %q must be host:port, e.g. relay.example.net:587" $name .address) }}
{{- end }}
{{- if and .user (not .passwordSecret) }}
{{- fail (printf "%s.smarthost.passwordSecret is required with user: a Secret holding the AUTH password under passwordKey (%s)" $name .passwordKey) }}
{{- end }}
{{- if and .passwordSecret (not .user) }}
{{- fail (printf "%s.smarthost.user is required with passwordSecret: the AUTH user name" $name) }}
{{- end }}
{{- end }}
{{- if and $svc.autoscaling.enabled (gt (int $svc.autoscaling.minReplicas) (int $svc.autoscaling.maxReplicas)) }}
{{- fail (printf "%s.autoscaling: minReplicas is greater than maxReplicas" $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- if has "s3" $uses }}
{{- $_ := required "s3.endpoint is required: host:port of your S3 API, without scheme (e.g. s3.eu-central-1.amazonaws.com:443 or minio.storage.svc:9000)" $v.s3.endpoint }}
{{- $_ := required "s3.bucket is required: the bucket that holds the raw messages" $v.s3.bucket }}
{{- $_ := required "s3.existingSecret is required: a Secret with the S3 access key and secret key (the services do not support workload identity yet)" $v.s3.existingSecret }}
{{- end }}
{{- if has "hostname" $uses }}
{{- $_ := required "hostname is required: the mail host name smtp and delivery announce (SMTP greeting, Received:, EHLO, DSN); use the name your MX records point to, e.g. mail.example.net" $v.hostname }}
{{- end }}
{{- if has "postgres" $uses }}
{{- $_ := required "postgres.existingSecret is required: a Secret with the PostgreSQL URL for store" $v.postgres.existingSecret }}
{{- end }}
{{- if has "tokenKeys" $uses }}
{{- $_ := required "auth.tokenKeysSecret is required: a Secret with store's token key file" $v.auth.tokenKeysSecret }}
{{- end }}
{{- if has "store" $uses }}
{{- $_ := required "auth.serviceTokensSecret is required: a Secret with each service's store token" $v.auth.serviceTokensSecret }}
{{- end }}
{{- if has "tls" $uses }}
{{- $_ := required "tls.existingSecret is required: a kubernetes.io/tls Secret with the certificate of the mail host names (STARTTLS, port 465)" $v.tls.existingSecret }}
{{- end }}
{{- end }}

{{/* A Service's ports for a service's enabled listeners; NodePort numbers
come from service.nodePorts when the mail Service is a NodePort or
LoadBalancer. */}}
{{- define "petrel.svc.servicePorts" -}}
{{- $s := default dict .svc.service -}}
{{- range $lname, $l := .svc.listeners }}
{{- if include "petrel.listenerOn" $l }}
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
{{- end }}
