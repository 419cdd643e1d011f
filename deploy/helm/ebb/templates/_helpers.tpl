{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "ebb.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: the release name when it already contains the
chart name (release "ebb" gives "ebb"), else <release>-<chart>. Truncated so
that the longest suffix ("-warm-pool") still fits in 63 characters.
*/}}
{{- define "ebb.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 53 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 53 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 53 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ebb.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "ebb.labels" -}}
helm.sh/chart: {{ include "ebb.chart" . }}
app.kubernetes.io/name: {{ include "ebb.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ebb
{{- end }}

{{/* Selector labels of one component; call with (list $ "operator"). */}}
{{- define "ebb.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "ebb.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* All labels of one component; call with (list $ "operator"). */}}
{{- define "ebb.componentLabels" -}}
{{ include "ebb.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "ebb.operator.fullname" -}}
{{- printf "%s-operator" (include "ebb.fullname" .) }}
{{- end }}

{{- define "ebb.gateway.fullname" -}}
{{- printf "%s-gateway" (include "ebb.fullname" .) }}
{{- end }}

{{- define "ebb.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "ebb.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ebb.gateway.serviceAccountName" -}}
{{- if .Values.gateway.serviceAccount.create }}
{{- default (include "ebb.gateway.fullname" .) .Values.gateway.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.gateway.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ebb.warmPool.priorityClassName" -}}
{{- default (printf "%s-warm-pool" (include "ebb.fullname" .)) .Values.warmPool.priorityClass.name }}
{{- end }}

{{- define "ebb.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The namespace this release serves. */}}
{{- define "ebb.watchNamespace" -}}
{{- default .Release.Namespace .Values.watchNamespace }}
{{- end }}

{{/* The operator's in-cluster URL, which the gateways report to. */}}
{{- define "ebb.operator.url" -}}
{{- printf "%s://%s.%s.svc:%d" (ternary "https" "http" (ne .Values.tls.operator.secretName "")) (include "ebb.operator.fullname" .) .Release.Namespace (int .Values.operator.port) }}
{{- end }}

{{/*
The OIDC flags of the operator and the gateways (auth.oidc), as a list of
args; nothing without an issuer.
*/}}
{{- define "ebb.oidcArgs" -}}
{{- with .Values.auth.oidc }}
{{- if .issuer }}
{{- if not $.Values.auth.enabled }}
{{- fail "auth.oidc.issuer needs auth.enabled: OIDC tokens are checked only with auth on" }}
{{- end }}
- {{ printf "--oidc-issuer=%s" .issuer | quote }}
- {{ printf "--oidc-audience=%s" (required "auth.oidc.audience is required with auth.oidc.issuer: the client ID the issuer names ebb by" .audience) | quote }}
- {{ printf "--oidc-scopes-claim=%s" (.scopesClaim | default "groups") | quote }}
{{- if not .scopeMap }}
{{- fail "auth.oidc.scopeMap is required with auth.oidc.issuer: map claim values to ebb scopes, e.g. [\"ml-admins=admin\"]" }}
{{- end }}
{{- range .scopeMap }}
- {{ printf "--oidc-scope-map=%s" . | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The tracing flags of the operator and the gateways (tracing), as a list of
args; nothing without an endpoint. The operator passes --otlp-endpoint,
--otlp-protocol and --trace-sample-ratio on to the replica pods it starts.
*/}}
{{- define "ebb.tracingArgs" -}}
{{- with .Values.tracing }}
{{- if .endpoint }}
{{- if not (has .protocol (list "grpc" "http")) }}
{{- fail (printf "tracing.protocol must be grpc or http, not %q" .protocol) }}
{{- end }}
- {{ printf "--otlp-endpoint=%s" .endpoint | quote }}
- {{ printf "--otlp-protocol=%s" .protocol | quote }}
- {{ printf "--trace-sample-ratio=%v" .sampleRatio | quote }}
{{- if .caSecret }}
- {{ printf "--otlp-ca-file=%s/ca.crt" (include "ebb.otlpCAPath" $) | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Where the gateway and operator pods mount tracing.caSecret's ca.crt. */}}
{{- define "ebb.otlpCAPath" -}}/etc/ebb/otlp-ca{{- end }}

{{/* Where the pods mount the TLS Secrets. */}}
{{- define "ebb.tlsPath" -}}/etc/ebb/tls{{- end }}
{{- define "ebb.operatorCAPath" -}}/etc/ebb/operator-ca{{- end }}
{{- define "ebb.replicaClientPath" -}}/etc/ebb/replica-client{{- end }}
{{- define "ebb.gatewayTokenPath" -}}/var/run/secrets/ebb/gateway-token{{- end }}

{{/* The Secrets where the operator keeps the admin and the gateways' tokens. */}}
{{- define "ebb.auth.adminTokenSecret" -}}
{{- default (printf "%s-admin-token" (include "ebb.fullname" .)) .Values.auth.adminTokenSecret }}
{{- end }}

{{- define "ebb.auth.gatewayTokenSecret" -}}
{{- default (printf "%s-gateway-token" (include "ebb.fullname" .)) .Values.auth.gatewayTokenSecret }}
{{- end }}

{{/*
Who may read /metrics (metrics.auth, the gateways' --metrics-auth): token
(scope read) or open.
*/}}
{{- define "ebb.metricsAuth" -}}
{{- $m := .Values.metrics.auth | default "token" }}
{{- if not (has $m (list "token" "open")) }}
{{- fail (printf "metrics.auth must be token or open, not %q" $m) }}
{{- end }}
{{- $m }}
{{- end }}

{{/*
Where async bodies over the queue's inline limit go (--async-payloads of
the gateways, --jobs-payloads of the operator): gateway.async.payloads,
else the artifacts' bucket when they are in S3 (s3://BUCKET/async), else
none (bodies stay in the queue's store). Empty when async is off.
*/}}
{{- define "ebb.asyncPayloads" -}}
{{- if .Values.gateway.async.store }}
{{- $loc := .Values.gateway.async.payloads | default "" }}
{{- if and (not $loc) (hasPrefix "s3://" (.Values.artifacts.location | default "")) }}
{{- $loc = regexReplaceAll "^(s3://[^/]+).*$" .Values.artifacts.location "${1}/async" }}
{{- end }}
{{- $loc }}
{{- end }}
{{- end }}
