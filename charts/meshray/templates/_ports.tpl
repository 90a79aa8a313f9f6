{{/*
THE port map. Every port number the chart writes comes from the list built here; no template
writes a port number of its own. It is built once per render into the model (_model.tpl):
read it as $m.ports and the views below, never by calling these defines from a template.
*/}}

{{/*
true when the Ray version still runs a dashboard gRPC server on the head (< 2.45).
Usage: include "meshray.usesDashboardGrpc" .
*/}}
{{- define "meshray.usesDashboardGrpc" -}}
{{- if semverCompare "<2.45.0-0" .Values.ray.version -}}true{{- end -}}
{{- end -}}

{{/*
Build the port map into the model. $m.ports: one entry per named port Ray uses,
  name:     Service port name (the `ray start` flag name)
  port:     number
  protocol: Istio appProtocol (http | grpc | tls when Ray-native TLS wraps gRPC)
  flag:     rayStartParams key that pins it (absent when pinned by env or not a flag)
  env:      env var that pins it (absent when pinned by a flag); set on the head, and on
            workers too for scope node
  scope:    node        every Ray node opens it: headless Service + every group's params
            headNode    only the head opens it, declared on the headless Service
            headService only the head opens it, served by KubeRay's <cluster>-head-svc via
                        the RayCluster's headService template (port name in `containerPort`)
  key:      the values key it comes from (validation messages name it)
$m.workerPorts: the worker ports, a plain list of numbers (ports.workerPortList, or
ports.minWorkerPort..maxWorkerPort): every node opens them, the headless Service lists each as
p<N> with $m.workerProtocol, every group's rayStartParams pins the range (or list). They stay a
plain list, not entries, so a 200-port range costs no per-port work where none is needed.
$m.workerRange: {min, max} (ints) when the worker ports are the range
ports.minWorkerPort..maxWorkerPort; empty when they are ports.workerPortList.
$m.workerPortsKey: the values key that messages about the worker ports name: ports.workerPortList
for a list, ports.maxWorkerPort for a range (as the range checks of cluster/_validate.tpl do).
This define is the only place that reads the worker-port values; everything else reads these.
Usage: include "meshray.model.ports" (dict "ctx" $ "model" $m)
*/}}
{{- define "meshray.model.ports" -}}
{{- $v := .ctx.Values -}}
{{- $p := $v.ports -}}
{{- $grpc := ternary "tls" "grpc" $v.rayTls.enabled -}}
{{- $l := list -}}
{{- $l = append $l (dict "name" "gcs-server-port" "port" $p.gcs "protocol" $grpc "flag" "port"
  "scope" "headService" "containerPort" "gcs-server" "key" "ports.gcs") -}}
{{- $l = append $l (dict "name" "dashboard-port" "port" $p.dashboard "protocol" "http" "flag" "dashboard-port"
  "scope" "headService" "containerPort" "dashboard" "key" "ports.dashboard") -}}
{{- $l = append $l (dict "name" "ray-client-server-port" "port" $p.client "protocol" $grpc "flag" "ray-client-server-port"
  "scope" "headService" "containerPort" "client" "key" "ports.client") -}}
{{- $l = append $l (dict "name" "node-manager-port" "port" $p.nodeManager "protocol" $grpc "flag" "node-manager-port"
  "scope" "node" "key" "ports.nodeManager") -}}
{{- $l = append $l (dict "name" "object-manager-port" "port" $p.objectManager "protocol" $grpc "flag" "object-manager-port"
  "scope" "node" "key" "ports.objectManager") -}}
{{- $l = append $l (dict "name" "runtime-env-agent-port" "port" $p.runtimeEnvAgent "protocol" "http" "flag" "runtime-env-agent-port"
  "scope" "node" "key" "ports.runtimeEnvAgent") -}}
{{- $l = append $l (dict "name" "dashboard-agent-grpc-port" "port" $p.dashboardAgentGrpc "protocol" $grpc "flag" "dashboard-agent-grpc-port"
  "scope" "node" "key" "ports.dashboardAgentGrpc") -}}
{{- $l = append $l (dict "name" "dashboard-agent-listen-port" "port" $p.dashboardAgentListen "protocol" "http" "flag" "dashboard-agent-listen-port"
  "scope" "node" "key" "ports.dashboardAgentListen") -}}
{{- $l = append $l (dict "name" "metrics-export-port" "port" $p.metricsExport "protocol" "http" "flag" "metrics-export-port"
  "scope" "node" "containerPort" "metrics" "key" "ports.metricsExport") -}}
{{- if include "meshray.usesDashboardGrpc" .ctx -}}
{{- $l = append $l (dict "name" "dashboard-grpc-port" "port" $p.dashboardGrpc "protocol" $grpc "flag" "dashboard-grpc-port"
  "scope" "headNode" "key" "ports.dashboardGrpc") -}}
{{- end -}}
{{- $l = append $l (dict "name" "autoscaler-metrics-port" "port" $p.autoscalerMetrics "protocol" "http" "env" "AUTOSCALER_METRIC_PORT"
  "scope" "headNode" "key" "ports.autoscalerMetrics") -}}
{{- $l = append $l (dict "name" "dashboard-metrics-port" "port" $p.dashboardMetrics "protocol" "http" "env" "DASHBOARD_METRIC_PORT"
  "scope" "headNode" "key" "ports.dashboardMetrics") -}}
{{- with $v.serve -}}
{{- if .enabled -}}
{{- $l = append $l (dict "name" "serve-http-port" "port" .httpPort "protocol" "http" "env" "RAY_SERVE_DEFAULT_HTTP_PORT"
  "scope" "node" "containerPort" "serve" "key" "serve.httpPort") -}}
{{- $l = append $l (dict "name" "serve-grpc-port" "port" .grpcPort "protocol" $grpc "env" "RAY_SERVE_DEFAULT_GRPC_PORT"
  "scope" "node" "containerPort" "serve-grpc" "key" "serve.grpcPort") -}}
{{- end -}}
{{- end -}}
{{- $workers := $p.workerPortList -}}
{{- $range := dict -}}
{{- $workersKey := "ports.workerPortList" -}}
{{- if not $workers -}}
{{- $range = dict "min" (int $p.minWorkerPort) "max" (int $p.maxWorkerPort) -}}
{{- $workersKey = "ports.maxWorkerPort" -}}
{{- $workers = untilStep $range.min (int (add1 $range.max)) 1 -}}
{{- end -}}
{{- $_ := set .model "ports" $l -}}
{{- $_ := set .model "workerPorts" $workers -}}
{{- $_ := set .model "workerRange" $range -}}
{{- $_ := set .model "workerPortsKey" $workersKey -}}
{{- $_ := set .model "workerProtocol" $grpc -}}
{{- end -}}

{{/*
Views of the port map that several templates need, built once into the model:
  servicePorts    the named ports the headless Service lists (every scope but headService);
                  it lists $m.workerPorts after them
  containerPorts  the named ports of KubeRay's <cluster>-head-svc: `metrics` on the head
                  container, the others in the RayCluster's headService template
  headPorts       the same as a map, containerPort name -> port (Ingress, gateway routes, policies)
  pinned.head / pinned.worker   the rayStartParams the port map owns, per role: pinned flags,
                  the worker range (or list), node-ip-address
  ownedFlags      every ray start flag the port map owns, whichever form the values use:
                  the pinned flags, worker-port-list, min-/max-worker-port, node-ip-address
  env.head / env.worker         the env entries that pin ports, per role ({name, value})
  podFqdn         "meshray.podFqdn", for node-ip-address and the TLS certificate's SANs
  portMapChecksum a digest of what pins ports per role (flags, worker range, env): the same
                  digest means the same ports on every pod; the RayCluster and every pod
                  template carry it as the annotation meshray.io/port-map-checksum
Usage: include "meshray.model.portViews" (dict "ctx" $ "model" $m)   (after meshray.model.ports)
*/}}
{{- define "meshray.model.portViews" -}}
{{- $servicePorts := list -}}
{{- $containerPorts := list -}}
{{- $headPorts := dict -}}
{{- $head := dict -}}
{{- $worker := dict -}}
{{- $headEnv := list -}}
{{- $workerEnv := list -}}
{{- range .model.ports -}}
{{- if ne .scope "headService" -}}
{{- $servicePorts = append $servicePorts . -}}
{{- end -}}
{{- if .containerPort -}}
{{- $containerPorts = append $containerPorts . -}}
{{- $_ := set $headPorts .containerPort .port -}}
{{- end -}}
{{- if .flag -}}
{{- $_ := set $head .flag (toString (int .port)) -}}
{{- if eq .scope "node" -}}
{{- $_ := set $worker .flag (toString (int .port)) -}}
{{- end -}}
{{- end -}}
{{- if .env -}}
{{- $e := dict "name" .env "value" (.port | int | toString) -}}
{{- $headEnv = append $headEnv $e -}}
{{- if eq .scope "node" -}}
{{- $workerEnv = append $workerEnv $e -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- /* The flags that pin the worker ports (a list, or a range) and the node address. */ -}}
{{- $nodeFlags := dict "list" "worker-port-list" "min" "min-worker-port" "max" "max-worker-port"
  "address" "node-ip-address" -}}
{{- $range := dict -}}
{{- with .model.workerRange -}}
{{- $_ := set $range $nodeFlags.min (toString .min) -}}
{{- $_ := set $range $nodeFlags.max (toString .max) -}}
{{- else -}}
{{- $_ := set $range $nodeFlags.list (join "," .model.workerPorts) -}}
{{- end -}}
{{- $fqdn := include "meshray.podFqdn" .ctx -}}
{{- $_ := set $range $nodeFlags.address $fqdn -}}
{{- $_ := set .model "ownedFlags" (concat (keys $head) (values $nodeFlags) | sortAlpha) -}}
{{- $_ := set .model "servicePorts" $servicePorts -}}
{{- $_ := set .model "containerPorts" $containerPorts -}}
{{- $_ := set .model "headPorts" $headPorts -}}
{{- $_ := set .model "pinned" (dict "head" (merge $head $range) "worker" (merge $worker $range)) -}}
{{- $_ := set .model "env" (dict "head" $headEnv "worker" $workerEnv) -}}
{{- $_ := set .model "podFqdn" $fqdn -}}
{{- $pinned := dict "head" (merge $head $range) "worker" (merge $worker $range) "env" (dict "head" $headEnv "worker" $workerEnv) -}}
{{- $_ := set .model "portMapChecksum" (toJson $pinned | sha256sum | trunc 16) -}}
{{- end -}}

{{/*
The Pod FQDN under the headless Service, built from the pod IP (downward API) by the shell
KubeRay runs ray start in: Ray's node-ip-address, and a SAN of each pod's TLS certificate.
Usage: include "meshray.podFqdn" .
*/}}
{{- define "meshray.podFqdn" -}}
{{- printf "${MESHRAY_POD_IP//[.:]/-}.%s.%s.svc.%s" (include "meshray.headlessServiceName" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}
