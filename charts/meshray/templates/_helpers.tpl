{{/*
Names, labels and the port map. Every template consumes the port list computed once in
"meshray.ports"; no port number is written anywhere else.
*/}}

{{- define "meshray.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "meshray.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The RayCluster's name: every other name derives from it. */}}
{{- define "meshray.clusterName" -}}
{{- default (include "meshray.fullname" .) .Values.clusterName -}}
{{- end -}}

{{/* The headless Service that lists every Ray port, one by one. */}}
{{- define "meshray.headlessServiceName" -}}
{{- printf "%s-headless-svc" (include "meshray.clusterName" .) -}}
{{- end -}}

{{/* The Service KubeRay creates for the head from the head container's ports. */}}
{{- define "meshray.headServiceName" -}}
{{- printf "%s-head-svc" (include "meshray.clusterName" .) -}}
{{- end -}}

{{- define "meshray.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "meshray.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.ray.version | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "meshray.clusterName" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The label KubeRay puts on every pod of the cluster: what our selectors select. */}}
{{- define "meshray.selectorLabels" -}}
ray.io/cluster: {{ include "meshray.clusterName" . }}
{{- end -}}

{{/*
Object metadata annotations: commonAnnotations plus the Argo CD sync wave given as argument.
Usage: include "meshray.annotations" (dict "ctx" $ "wave" "-1" "extra" $map)
*/}}
{{- define "meshray.annotations" -}}
{{- $a := dict "argocd.argoproj.io/sync-wave" .wave -}}
{{- $a = merge $a (.extra | default dict) (.ctx.Values.commonAnnotations | default dict) -}}
{{ toYaml $a }}
{{- end -}}

{{- define "meshray.rayImage" -}}
{{- printf "%s:%s" .Values.ray.image.repository (default .Values.ray.version .Values.ray.image.tag) -}}
{{- end -}}

{{/* true when the Ray version still runs a dashboard gRPC server on the head (< 2.45). */}}
{{- define "meshray.usesDashboardGrpc" -}}
{{- if semverCompare "<2.45.0-0" .Values.ray.version -}}true{{- end -}}
{{- end -}}

{{/* The worker ports, as a YAML list of integers (the explicit list or the min..max range). */}}
{{- define "meshray.workerPorts" -}}
{{- $p := .Values.ports -}}
{{- if $p.workerPortList -}}
{{ toYaml $p.workerPortList }}
{{- else -}}
{{ toYaml (untilStep (int $p.minWorkerPort) (int (add1 $p.maxWorkerPort)) 1) }}
{{- end -}}
{{- end -}}

{{/*
THE port list. One entry per port Ray uses, as YAML:
  name:     Service port name (the `ray start` flag name; worker ports p<N>)
  port:     number
  protocol: Istio appProtocol (http | grpc | tls when Ray-native TLS wraps gRPC)
  flag:     rayStartParams key that pins it ("" when pinned by env or not a flag)
  env:      env var that pins it ("" when pinned by a flag); set on the head, and on
            workers too for scope node
  scope:    node        every Ray node opens it: headless Service + every group's params
            headNode    only the head opens it, declared on the headless Service
            headService only the head opens it, served by KubeRay's <cluster>-head-svc via
                        the head container's ports (containerPort name in `containerPort`)
            worker      a worker port: headless Service + every group's worker range
Read it with: include "meshray.ports" . | fromYaml | get "ports"
*/}}
{{- define "meshray.ports" -}}
{{- $p := .Values.ports -}}
{{- $grpc := ternary "tls" "grpc" .Values.rayTls.enabled -}}
{{- $l := list -}}
{{- $l = append $l (dict "name" "gcs-server-port" "port" $p.gcs "protocol" $grpc "flag" "port" "scope" "headService" "containerPort" "gcs-server" "key" "ports.gcs") -}}
{{- $l = append $l (dict "name" "dashboard-port" "port" $p.dashboard "protocol" "http" "flag" "dashboard-port" "scope" "headService" "containerPort" "dashboard" "key" "ports.dashboard") -}}
{{- $l = append $l (dict "name" "ray-client-server-port" "port" $p.client "protocol" $grpc "flag" "ray-client-server-port" "scope" "headService" "containerPort" "client" "key" "ports.client") -}}
{{- $l = append $l (dict "name" "node-manager-port" "port" $p.nodeManager "protocol" $grpc "flag" "node-manager-port" "scope" "node" "key" "ports.nodeManager") -}}
{{- $l = append $l (dict "name" "object-manager-port" "port" $p.objectManager "protocol" $grpc "flag" "object-manager-port" "scope" "node" "key" "ports.objectManager") -}}
{{- $l = append $l (dict "name" "runtime-env-agent-port" "port" $p.runtimeEnvAgent "protocol" "http" "flag" "runtime-env-agent-port" "scope" "node" "key" "ports.runtimeEnvAgent") -}}
{{- $l = append $l (dict "name" "dashboard-agent-grpc-port" "port" $p.dashboardAgentGrpc "protocol" $grpc "flag" "dashboard-agent-grpc-port" "scope" "node" "key" "ports.dashboardAgentGrpc") -}}
{{- $l = append $l (dict "name" "dashboard-agent-listen-port" "port" $p.dashboardAgentListen "protocol" "http" "flag" "dashboard-agent-listen-port" "scope" "node" "key" "ports.dashboardAgentListen") -}}
{{- $l = append $l (dict "name" "metrics-export-port" "port" $p.metricsExport "protocol" "http" "flag" "metrics-export-port" "scope" "node" "containerPort" "metrics" "key" "ports.metricsExport") -}}
{{- if include "meshray.usesDashboardGrpc" . -}}
{{- $l = append $l (dict "name" "dashboard-grpc-port" "port" $p.dashboardGrpc "protocol" $grpc "flag" "dashboard-grpc-port" "scope" "headNode" "key" "ports.dashboardGrpc") -}}
{{- end -}}
{{- $l = append $l (dict "name" "autoscaler-metrics-port" "port" $p.autoscalerMetrics "protocol" "http" "env" "AUTOSCALER_METRIC_PORT" "scope" "headNode" "key" "ports.autoscalerMetrics") -}}
{{- $l = append $l (dict "name" "dashboard-metrics-port" "port" $p.dashboardMetrics "protocol" "http" "env" "DASHBOARD_METRIC_PORT" "scope" "headNode" "key" "ports.dashboardMetrics") -}}
{{- with .Values.serve -}}
{{- if .enabled -}}
{{- $l = append $l (dict "name" "serve-http-port" "port" .httpPort "protocol" "http" "env" "RAY_SERVE_DEFAULT_HTTP_PORT" "scope" "node" "containerPort" "serve" "key" "serve.httpPort") -}}
{{- $l = append $l (dict "name" "serve-grpc-port" "port" .grpcPort "protocol" $grpc "env" "RAY_SERVE_DEFAULT_GRPC_PORT" "scope" "node" "containerPort" "serve-grpc" "key" "serve.grpcPort") -}}
{{- end -}}
{{- end -}}
{{- range $port := include "meshray.workerPorts" . | fromYamlArray -}}
{{- $l = append $l (dict "name" (printf "p%d" (int $port)) "port" $port "protocol" $grpc "scope" "worker" "key" "ports.workerPorts") -}}
{{- end -}}
{{ toYaml (dict "ports" $l) }}
{{- end -}}

{{/* The ports the headless Service lists: every scope but headService. */}}
{{- define "meshray.servicePorts" -}}
{{- $out := list -}}
{{- range (include "meshray.ports" . | fromYaml).ports -}}
{{- if ne .scope "headService" -}}
{{- $out = append $out . -}}
{{- end -}}
{{- end -}}
{{ toYaml (dict "ports" $out) }}
{{- end -}}

{{/* The Pod FQDN under the headless Service, from the pod IP (downward API), for node-ip-address. */}}
{{- define "meshray.podFqdn" -}}
{{- printf "${MESHRAY_POD_IP//[.:]/-}.%s.%s.svc.%s" (include "meshray.headlessServiceName" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{/*
rayStartParams for one group: pinned ports first (from the port list), then the group's extras.
Usage: include "meshray.rayStartParams" (dict "ctx" $ "head" true "extra" $params)
*/}}
{{- define "meshray.rayStartParams" -}}
{{- $ctx := .ctx -}}
{{- $params := dict -}}
{{- range $k, $v := .extra -}}
{{- $_ := set $params $k (toString $v) -}}
{{- end -}}
{{- $workers := list -}}
{{- range (include "meshray.ports" $ctx | fromYaml).ports -}}
{{- if eq .scope "worker" -}}
{{- $workers = append $workers (int .port) -}}
{{- else if and .flag (or (eq .scope "node") $.head) -}}
{{- $_ := set $params .flag (toString (int .port)) -}}
{{- end -}}
{{- end -}}
{{- if $ctx.Values.ports.workerPortList -}}
{{- $_ := set $params "worker-port-list" (join "," $workers) -}}
{{- else -}}
{{- $_ := set $params "min-worker-port" (toString (int $ctx.Values.ports.minWorkerPort)) -}}
{{- $_ := set $params "max-worker-port" (toString (int $ctx.Values.ports.maxWorkerPort)) -}}
{{- end -}}
{{- if and .head (not (hasKey $params "dashboard-host")) -}}
{{- $_ := set $params "dashboard-host" "0.0.0.0" -}}
{{- end -}}
{{- $_ := set $params "node-ip-address" (include "meshray.podFqdn" $ctx) -}}
{{ toYaml $params }}
{{- end -}}

{{/* The ClusterIP Service the Istio gateway routes to (head pod only, real appProtocols). */}}
{{- define "meshray.gatewayServiceName" -}}
{{- printf "%s-gateway-svc" (include "meshray.clusterName" .) -}}
{{- end -}}

{{/* The gateway namespace: from existingGateway (ns/name) or gateway.namespace. */}}
{{- define "meshray.gatewayNamespace" -}}
{{- if .Values.gateway.existingGateway -}}
{{- first (splitList "/" .Values.gateway.existingGateway) -}}
{{- else -}}
{{- .Values.gateway.namespace -}}
{{- end -}}
{{- end -}}

{{/*
Object metadata: name, namespace, common labels + component, annotations with the Argo CD
sync wave (Services and policies -1, the RayCluster 0, routes 1).
Usage: include "meshray.metadata" (dict "ctx" $ "name" $n "component" "x" "wave" "-1"
                                        ["labels" $map] ["annotations" $map])
*/}}
{{- define "meshray.metadata" -}}
name: {{ .name }}
namespace: {{ .ctx.Release.Namespace }}
labels:
  {{- include "meshray.labels" .ctx | nindent 2 }}
  app.kubernetes.io/component: {{ .component }}
  {{- with .labels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  {{- include "meshray.annotations" (dict "ctx" .ctx "wave" .wave "extra" .annotations) | nindent 2 }}
{{- end -}}
