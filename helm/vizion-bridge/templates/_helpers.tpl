{{/* Chart name, at most 63 characters. */}}
{{- define "vizion-bridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's resources, at most 52 characters rather than the usual 63:
the metrics and headless Services append "-metrics" and "-headless" (9 characters),
and a StatefulSet's pods carry the label controller-revision-hash, its name plus "-"
and a 10-character hash, which must fit in 63.
*/}}
{{- define "vizion-bridge.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "vizion-bridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource. */}}
{{- define "vizion-bridge.labels" -}}
helm.sh/chart: {{ include "vizion-bridge.chart" . }}
{{ include "vizion-bridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the pods. */}}
{{- define "vizion-bridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vizion-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vizion-bridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vizion-bridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the webhook keys and the other secrets. */}}
{{- define "vizion-bridge.secretName" -}}
{{- default (include "vizion-bridge.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* StatefulSet (one spool volume per pod) or Deployment. */}}
{{- define "vizion-bridge.workloadKind" -}}
{{- if .Values.spool.enabled }}StatefulSet{{ else }}Deployment{{ end }}
{{- end }}

{{/* Where the pod mounts things. */}}
{{- define "vizion-bridge.secretsDir" -}}/etc/vizion-bridge/secrets{{- end }}
{{- define "vizion-bridge.dataDir" -}}/var/lib/vizion-bridge/data{{- end }}
{{- define "vizion-bridge.spoolDir" -}}/var/lib/vizion-bridge/spool{{- end }}

{{/*
Helm reads every number of values.yaml as a float, and toToml writes 3 as 3.0, which
the bridge rejects for integer keys. This turns whole floats back into integers, in
place, through nested tables and arrays of tables.
*/}}
{{- define "vizion-bridge.wholeNumbersAsIntegers" -}}
{{- $node := . }}
{{- if kindIs "map" $node }}
{{- range $key, $value := $node }}
{{- /* Nested ifs, not `and`: before helm 3.11 `and` evaluated every argument, and the
comparison failed on values that are not numbers. */}}
{{- if kindIs "float64" $value }}
{{- if eq (float64 (int64 $value)) $value }}
{{- $_ := set $node $key (int64 $value) }}
{{- end }}
{{- else if or (kindIs "map" $value) (kindIs "slice" $value) }}
{{- include "vizion-bridge.wholeNumbersAsIntegers" $value }}
{{- end }}
{{- end }}
{{- else if kindIs "slice" $node }}
{{- range $item := $node }}
{{- if kindIs "map" $item }}
{{- include "vizion-bridge.wholeNumbersAsIntegers" $item }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The configuration file: config from the values, with the keys the chart owns (ports,
paths, secret files) set on top.
*/}}
{{- define "vizion-bridge.configToml" -}}
{{- $config := deepCopy .Values.config }}
{{- $secretsDir := include "vizion-bridge.secretsDir" . }}
{{- $server := default (dict) $config.server }}
{{- $_ := set $server "listen" (printf "%s:%d" (include "vizion-bridge.hostPort" .Values.listenAddress) (int .Values.ports.http)) }}
{{- $_ := set $server "shutdown_delay" (printf "%ds" (int .Values.shutdown.delaySeconds)) }}
{{- $_ := set $server "shutdown_timeout" (printf "%ds" (int .Values.shutdown.timeoutSeconds)) }}
{{- $_ := set $config "server" $server }}
{{- $metrics := default (dict) $config.metrics }}
{{- $_ := set $metrics "listen" (printf "%s:%d" (include "vizion-bridge.hostPort" .Values.listenAddress) (int .Values.ports.metrics)) }}
{{- $_ := set $config "metrics" $metrics }}
{{- $storage := default (dict) $config.storage }}
{{- $_ := set $storage "data_dir" (include "vizion-bridge.dataDir" .) }}
{{- $_ := set $config "storage" $storage }}
{{- $auth := default (dict) $config.auth }}
{{- $keys := list }}
{{- range .Values.secrets.webhookKeys }}
{{- $keys = append $keys (dict "key_id" .keyId "secret_file" (printf "%s/webhook-%s" $secretsDir .keyId)) }}
{{- end }}
{{- $_ := set $auth "secrets" $keys }}
{{- $_ := set $config "auth" $auth }}
{{- if .Values.spool.enabled }}
{{- $spool := default (dict) $config.spool }}
{{- $_ := set $spool "dir" (include "vizion-bridge.spoolDir" .) }}
{{- $_ := set $config "spool" $spool }}
{{- $delivery := default (dict) $config.delivery }}
{{- if not $delivery.mode }}
{{- $_ := set $delivery "mode" "broker_then_spool" }}
{{- end }}
{{- $_ := set $config "delivery" $delivery }}
{{- end }}
{{- if .Values.secrets.rabbitmqUrl.enabled }}
{{- $rabbitmq := default (dict) $config.rabbitmq }}
{{- $_ := set $rabbitmq "url_file" (printf "%s/rabbitmq-url" $secretsDir) }}
{{- $_ := set $config "rabbitmq" $rabbitmq }}
{{- end }}
{{- if .Values.secrets.redisUrl.enabled }}
{{- $dedup := default (dict) $config.dedup }}
{{- $_ := set $dedup "redis_url_file" (printf "%s/redis-url" $secretsDir) }}
{{- $_ := set $config "dedup" $dedup }}
{{- end }}
{{- if .Values.secrets.vizionApiKey.enabled }}
{{- $api := default (dict) (get $config "vizion_api") }}
{{- $_ := set $api "api_key_file" (printf "%s/vizion-api-key" $secretsDir) }}
{{- $_ := set $config "vizion_api" $api }}
{{- end }}
{{- if .Values.secrets.kafkaProperties }}
{{- $kafka := default (dict) $config.kafka }}
{{- $files := default (dict) (get $kafka "properties_file") }}
{{- range $property, $_value := .Values.secrets.kafkaProperties }}
{{- $_ := set $files $property (printf "%s/kafka-%s" $secretsDir $property) }}
{{- end }}
{{- $_ := set $kafka "properties_file" $files }}
{{- $_ := set $config "kafka" $kafka }}
{{- end }}
{{- include "vizion-bridge.wholeNumbersAsIntegers" $config }}
{{- toToml $config }}
{{- end }}

{{/*
The startup probe's failureThreshold: startupProbe.failureThreshold when set, else a
minute of periods plus, with the spool, enough periods to read all of
config.spool.max_bytes (the bridge's default, 1 GiB, when unset) at
startupProbe.replayBytesPerSecond: the bridge reads the spool back before it listens.
*/}}
{{- define "vizion-bridge.startupFailureThreshold" -}}
{{- $probe := .Values.startupProbe }}
{{- $period := int64 $probe.periodSeconds }}
{{- if gt (int64 $probe.failureThreshold) 0 }}
{{- int64 $probe.failureThreshold }}
{{- else }}
{{- $periods := div (add 60 $period -1) $period }}
{{- if .Values.spool.enabled }}
{{- $spoolBytes := int64 (default 1073741824 (get (default (dict) (get .Values.config "spool")) "max_bytes")) }}
{{- $bytesPerPeriod := mul (int64 $probe.replayBytesPerSecond) $period }}
{{- $periods = add $periods (div (add $spoolBytes $bytesPerPeriod -1) $bytesPerPeriod) }}
{{- end }}
{{- $periods }}
{{- end }}
{{- end }}

{{/* An address as the host part of host:port: IPv6 in brackets. */}}
{{- define "vizion-bridge.hostPort" -}}
{{- if contains ":" . }}[{{ . }}]{{ else }}{{ . }}{{ end }}
{{- end }}

{{/* Fails the rendering on values that cannot work together. */}}
{{- define "vizion-bridge.validate" -}}
{{- $drain := add .Values.shutdown.delaySeconds .Values.shutdown.timeoutSeconds }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int $drain) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be above shutdown.delaySeconds + shutdown.timeoutSeconds (%d): Kubernetes would kill pods with webhooks in flight" (int .Values.terminationGracePeriodSeconds) (int $drain)) }}
{{- end }}
{{- if not .Values.secrets.existingSecret }}
{{- range .Values.secrets.webhookKeys }}
{{- if not .secret }}
{{- fail (printf "secrets.webhookKeys: key %q has no secret (set it, or use secrets.existingSecret)" .keyId) }}
{{- end }}
{{- end }}
{{- if and .Values.secrets.vizionApiKey.enabled (not .Values.secrets.vizionApiKey.value) }}
{{- fail "secrets.vizionApiKey.enabled is true but secrets.vizionApiKey.value is empty" }}
{{- end }}
{{- if and .Values.secrets.rabbitmqUrl.enabled (not .Values.secrets.rabbitmqUrl.value) }}
{{- fail "secrets.rabbitmqUrl.enabled is true but secrets.rabbitmqUrl.value is empty" }}
{{- end }}
{{- if and .Values.secrets.redisUrl.enabled (not .Values.secrets.redisUrl.value) }}
{{- fail "secrets.redisUrl.enabled is true but secrets.redisUrl.value is empty" }}
{{- end }}
{{- end }}
{{- if and .Values.spool.enabled .Values.autoscaling.enabled }}
{{- fail "spool.enabled and autoscaling.enabled together would strand spooled updates: a scaled-down pod keeps its records on a volume no pod reads; scale a spooling StatefulSet by hand, after vizion_bridge_spool_entries reads 0" }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.host) }}
{{- fail "ingress.enabled needs ingress.host (the host of Vizion's callback_url)" }}
{{- end }}
{{- end }}
