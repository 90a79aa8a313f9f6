{{/*
Cross-field checks, one define per rule family. values.schema.json (generated from
values.schema.yamale) already enforces types, enums and port ranges; these catch what a schema
cannot. Each family returns its problems as a JSON list of messages, one per problem, each
naming the key and the value and saying what to do; validate.yaml collects every family's
messages and fails once with all of them. A family never calls fail itself.
Every family has the same usage:
  include "meshray.validate.<family>" (dict "ctx" $ "model" $m) | fromJsonArray
*/}}

{{/*
The families, in the order their messages are reported.
Usage: include "meshray.validate.families" . | fromJsonArray
*/}}
{{- define "meshray.validate.families" -}}
{{- toJson (list "names" "workerPorts" "uniquePorts" "rayStartParams" "podLabels" "replicas" "mtls" "ingress" "rayAuth" "serveModes" "gateway") -}}
{{- end -}}

{{/* Names: the cluster name prefixes every object and must fit once suffixed. */}}
{{- define "meshray.validate.names" -}}
{{- $v := .ctx.Values -}}
{{- $problems := list -}}
{{- $cluster := include "meshray.clusterName" .ctx -}}
{{- $nameKey := ternary "clusterName" "the release name (clusterName is empty)" (ne $v.clusterName "") -}}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $cluster) -}}
{{- $problems = append $problems (printf "%s: %q is not a DNS-1035 label (lower-case letters, digits and '-', starting with a letter): the RayCluster and its Services are named after it" $nameKey $cluster) -}}
{{- end -}}
{{- $svc := include "meshray.headlessServiceName" .ctx -}}
{{- if gt (len $svc) 63 -}}
{{- $problems = append $problems (printf "%s: %q is %d characters, so the headless Service name %q exceeds 63; use at most 50 characters" $nameKey $cluster (len $cluster) $svc) -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}

{{/* Worker ports: range order, size ceiling, list duplicates. */}}
{{- define "meshray.validate.workerPorts" -}}
{{- $p := .ctx.Values.ports -}}
{{- $problems := list -}}
{{- if $p.workerPortList -}}
{{- $seen := dict -}}
{{- range $p.workerPortList -}}
{{- $k := toString (int .) -}}
{{- if eq (get $seen $k) "once" -}}
{{- $problems = append $problems (printf "ports.workerPortList: port %d is listed twice" (int .)) -}}
{{- $_ := set $seen $k "reported" -}}
{{- else if not (hasKey $seen $k) -}}
{{- $_ := set $seen $k "once" -}}
{{- end -}}
{{- end -}}
{{- if gt (len $p.workerPortList) (int $p.maxWorkerPorts) -}}
{{- $problems = append $problems (printf "ports.workerPortList: %d worker ports exceed ports.maxWorkerPorts=%d. Every worker port is a Service port, and each Istio sidecar is programmed per pod and port (Ray's default range 10002-19999 got pods OOM-killed, kuberay#1005); shorten the list or raise ports.maxWorkerPorts deliberately" (len $p.workerPortList) (int $p.maxWorkerPorts)) -}}
{{- end -}}
{{- else -}}
{{- if le (int $p.maxWorkerPort) (int $p.minWorkerPort) -}}
{{- $problems = append $problems (printf "ports.maxWorkerPort: %d must be greater than ports.minWorkerPort (%d); Ray refuses max-worker-port <= min-worker-port" (int $p.maxWorkerPort) (int $p.minWorkerPort)) -}}
{{- end -}}
{{- $count := add1 (sub (int $p.maxWorkerPort) (int $p.minWorkerPort)) -}}
{{- if gt (int $count) (int $p.maxWorkerPorts) -}}
{{- $problems = append $problems (printf "ports.maxWorkerPort: the worker range %d-%d is %d ports, above ports.maxWorkerPorts=%d. Every worker port is a Service port, and each Istio sidecar is programmed per pod and port (Ray's default range 10002-19999 got pods OOM-killed, kuberay#1005); narrow the range or raise ports.maxWorkerPorts deliberately" (int $p.minWorkerPort) (int $p.maxWorkerPort) (int $count) (int $p.maxWorkerPorts)) -}}
{{- end -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}

{{/* Every port number is used by exactly one component (duplicates within workerPortList are
the workerPorts family's). */}}
{{- define "meshray.validate.uniquePorts" -}}
{{- $problems := list -}}
{{- $owner := dict -}}
{{- range .model.ports -}}
{{- $k := toString (int .port) -}}
{{- if hasKey $owner $k -}}
{{- $problems = append $problems (printf "%s: port %s is already used by %s; every Ray port must be unique (Ray itself refuses duplicate ports)" .key $k (get $owner $k)) -}}
{{- else -}}
{{- $_ := set $owner $k .key -}}
{{- end -}}
{{- end -}}
{{- range .model.workerPorts -}}
{{- $k := toString (int .) -}}
{{- if hasKey $owner $k -}}
{{- $problems = append $problems (printf "ports.workerPorts: port %s is already used by %s; every Ray port must be unique (Ray itself refuses duplicate ports)" $k (get $owner $k)) -}}
{{- end -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}

{{/* Extra rayStartParams may not touch what the port map owns. */}}
{{- define "meshray.validate.rayStartParams" -}}
{{- $v := .ctx.Values -}}
{{- $problems := list -}}
{{- $owned := list "port" "dashboard-port" "ray-client-server-port" "node-manager-port" "object-manager-port" "runtime-env-agent-port" "dashboard-agent-grpc-port" "dashboard-agent-listen-port" "metrics-export-port" "min-worker-port" "max-worker-port" "worker-port-list" "node-ip-address" -}}
{{- range .model.groupSources -}}
{{- $key := printf "%s.rayStartParams" .key -}}
{{- range $flag, $val := (.v.rayStartParams | default dict) -}}
{{- if eq $flag "gcs-server-port" -}}
{{- $problems = append $problems (printf "%s.gcs-server-port: %q: --gcs-server-port is deprecated and Ray 2.48 removed it (ray.version=%s); the GCS port is ports.gcs" $key (toString $val) $v.ray.version) -}}
{{- else if eq $flag "dashboard-grpc-port" -}}
{{- if semverCompare ">=2.48.0-0" $v.ray.version -}}
{{- $problems = append $problems (printf "%s.dashboard-grpc-port: %q: Ray 2.48 removed --dashboard-grpc-port (ray.version=%s); remove it" $key (toString $val) $v.ray.version) -}}
{{- else -}}
{{- $problems = append $problems (printf "%s.dashboard-grpc-port: %q: the chart pins it from ports.dashboardGrpc when ray.version < 2.45 (ray.version=%s); set ports.dashboardGrpc instead" $key (toString $val) $v.ray.version) -}}
{{- end -}}
{{- else if has $flag $owned -}}
{{- $problems = append $problems (printf "%s.%s: %q overrides a port the chart pins from the port map; set it under ports (or clusterDomain for node-ip-address) so the Service and every group agree" $key $flag (toString $val)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}

{{/* KubeRay owns these pod labels. */}}
{{- define "meshray.validate.podLabels" -}}
{{- $problems := list -}}
{{- range .model.groupSources -}}
{{- $key := printf "%s.labels" .key -}}
{{- $labels := .v.labels | default dict -}}
{{- range $l := list "ray.io/cluster" "ray.io/node-type" "ray.io/group" -}}
{{- if hasKey $labels $l -}}
{{- $problems = append $problems (printf "%s.%s: KubeRay sets this label itself and the chart's selectors rely on it; remove it" $key $l) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}

{{/* Group names and replica bounds per worker group. */}}
{{- define "meshray.validate.replicas" -}}
{{- $problems := list -}}
{{- range .model.groups -}}
{{- $g := .values -}}
{{- if gt (len .name) 63 -}}
{{- $problems = append $problems (printf "workerGroups.%s: the group name is %d characters; it becomes the ray.io/group label, which allows 63" .name (len .name)) -}}
{{- end -}}
{{- if or (lt (int $g.replicas) (int $g.minReplicas)) (gt (int $g.replicas) (int $g.maxReplicas)) -}}
{{- $problems = append $problems (printf "workerGroups.%s.replicas: %d is outside minReplicas..maxReplicas (%d..%d)" .name (int $g.replicas) (int $g.minReplicas) (int $g.maxReplicas)) -}}
{{- end -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}

{{/* PeerAuthentication: port exceptions and policy names. */}}
{{- define "meshray.validate.mtls" -}}
{{- $m := .ctx.Values.mtls -}}
{{- $problems := list -}}
{{- if and $m.enabled $m.portLevelMtls -}}
{{- if eq $m.scope "namespace" -}}
{{- $problems = append $problems "mtls.portLevelMtls: Istio applies port-level mTLS only to policies with a workload selector; use mtls.scope=cluster or drop the exceptions" -}}
{{- end -}}
{{- $podPorts := dict -}}
{{- range .model.ports -}}
{{- $_ := set $podPorts (toString (int .port)) true -}}
{{- end -}}
{{- range .model.workerPorts -}}
{{- $_ := set $podPorts (toString (int .)) true -}}
{{- end -}}
{{- $seen := dict -}}
{{- range $m.portLevelMtls -}}
{{- $k := toString (int .port) -}}
{{- if not (hasKey $podPorts $k) -}}
{{- $problems = append $problems (printf "mtls.portLevelMtls: port %s is not a port the Ray pods listen on (portLevelMtls keys on the workload port); use one of the ports in the port map" $k) -}}
{{- end -}}
{{- if eq (get $seen $k) "once" -}}
{{- $problems = append $problems (printf "mtls.portLevelMtls: port %s is listed twice" $k) -}}
{{- $_ := set $seen $k "reported" -}}
{{- else if not (hasKey $seen $k) -}}
{{- $_ := set $seen $k "once" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $policyNames := dict (include "meshray.peerAuthenticationName" .ctx) "mtls" -}}
{{- range $m.extraPolicies -}}
{{- if hasKey $policyNames .name -}}
{{- $problems = append $problems (printf "mtls.extraPolicies: name %q is already used by another PeerAuthentication of this release" .name) -}}
{{- end -}}
{{- $_ := set $policyNames .name "extra" -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}

{{/* Ingresses: what the Ray Client and dashboard Ingresses need to work and be safe. */}}
{{- define "meshray.validate.ingress" -}}
{{- $v := .ctx.Values -}}
{{- $problems := list -}}
{{- $ic := $v.ingress.client -}}
{{- if $ic.enabled -}}
{{- if not $v.rayTls.enabled -}}
{{- $problems = append $problems "ingress.client.enabled: true needs rayTls.enabled=true: with ssl-passthrough NGINX hands the client's TLS stream to Ray's client server, which must speak TLS" -}}
{{- end -}}
{{- if not $ic.host -}}
{{- $problems = append $problems "ingress.client.host: \"\": ssl-passthrough routes by SNI, so the client Ingress needs a host name" -}}
{{- end -}}
{{- end -}}
{{- $id := $v.ingress.dashboard -}}
{{- if $id.enabled -}}
{{- $t := $id.auth.type -}}
{{- if and (eq $t "none") (not $v.rayAuth.enabled) (not $id.acknowledgeUnauthenticated) -}}
{{- $problems = append $problems "ingress.dashboard.auth.type: \"none\": the dashboard and Jobs API execute arbitrary code for whoever reaches them (CVE-2023-48022). Set ingress.dashboard.auth.type to basic or external, or rayAuth.enabled=true (Ray token auth), or ingress.dashboard.acknowledgeUnauthenticated=true if something else guards it" -}}
{{- end -}}
{{- if and (eq $t "basic") (not $id.auth.basicSecretName) -}}
{{- $problems = append $problems "ingress.dashboard.auth.basicSecretName: \"\": auth.type=basic needs the name of a Secret holding an htpasswd file under the key auth" -}}
{{- end -}}
{{- if and (eq $t "external") (not $id.auth.externalUrl) -}}
{{- $problems = append $problems "ingress.dashboard.auth.externalUrl: \"\": auth.type=external needs the URL of the authentication service (for example oauth2-proxy's /oauth2/auth)" -}}
{{- end -}}
{{- if and $id.tls.enabled (not $id.tls.secretName) -}}
{{- $problems = append $problems "ingress.dashboard.tls.secretName: \"\": tls.enabled=true needs the name of a TLS Secret" -}}
{{- end -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}

{{/* Ray token auth. */}}
{{- define "meshray.validate.rayAuth" -}}
{{- $v := .ctx.Values -}}
{{- $problems := list -}}
{{- if and $v.rayAuth.enabled (semverCompare "<2.52.0-0" $v.ray.version) -}}
{{- $problems = append $problems (printf "rayAuth.enabled: true needs Ray >= 2.52 for token authentication (ray.version=%s)" $v.ray.version) -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}

{{/* Serve modes that bind ports the mesh cannot know (ray#64544). */}}
{{- define "meshray.validate.serveModes" -}}
{{- $problems := list -}}
{{- range .model.groupSources -}}
{{- $key := printf "%s.env" .key -}}
{{- range (.v.env | default list) -}}
{{- if and (has .name (list "RAY_SERVE_THROUGHPUT_OPTIMIZED" "RAY_SERVE_ENABLE_DIRECT_INGRESS" "RAY_SERVE_ENABLE_HA_PROXY")) (has (toString .value | lower) (list "1" "true")) -}}
{{- $problems = append $problems (printf "%s: %s=%q makes Ray Serve bind replica ports at random or from a range, which no Service can declare, so the mesh cannot carry that traffic (ray#64544); remove it" $key .name (toString .value)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}

{{/* Istio ingress gateway: routes, servers, TLS modes and authentication. */}}
{{- define "meshray.validate.gateway" -}}
{{- $v := .ctx.Values -}}
{{- $gw := $v.gateway -}}
{{- $problems := list -}}
{{- if $gw.enabled -}}
{{- $r := $gw.routes -}}
{{- if not (or $r.dashboard.enabled $r.serve.enabled $r.client.enabled) -}}
{{- $problems = append $problems "gateway.routes: gateway.enabled=true but no route is enabled; enable gateway.routes.dashboard, .serve or .client" -}}
{{- end -}}
{{- range $route := list "dashboard" "serve" "client" -}}
{{- $rv := get $r $route -}}
{{- if and $rv.enabled (not $rv.host) -}}
{{- $problems = append $problems (printf "gateway.routes.%s.host: \"\": a gateway route needs a host name" $route) -}}
{{- end -}}
{{- end -}}
{{- if and $r.serve.enabled (not $v.serve.enabled) -}}
{{- $problems = append $problems "gateway.routes.serve.enabled: true needs serve.enabled=true, which declares and pins the Serve proxy ports" -}}
{{- end -}}
{{- $passthrough := and $r.client.enabled (eq $r.client.mode "passthrough") -}}
{{- if and $passthrough (not $v.rayTls.enabled) -}}
{{- $problems = append $problems "gateway.routes.client.mode: \"passthrough\" needs rayTls.enabled=true: the gateway passes the TLS stream through to Ray's client server" -}}
{{- end -}}
{{- if and $r.client.enabled (eq $r.client.mode "grpc") $v.rayTls.enabled -}}
{{- $problems = append $problems "gateway.routes.client.mode: \"grpc\" cannot work with rayTls.enabled=true: the gateway would send plaintext gRPC to a TLS server; use mode passthrough" -}}
{{- end -}}
{{- if and $passthrough $gw.https.disableSniMatching -}}
{{- $problems = append $problems "gateway.https.disableSniMatching: true cannot be combined with gateway.routes.client.mode=passthrough, which routes by SNI" -}}
{{- end -}}
{{- $needsHttps := or $passthrough (and (or $r.dashboard.enabled $r.serve.enabled (and $r.client.enabled (eq $r.client.mode "grpc"))) (not $gw.http.enabled)) -}}
{{- if and (not $gw.existingGateway) $needsHttps (not $gw.https.enabled) -}}
{{- $problems = append $problems "gateway.https.enabled: false, but the enabled routes need the HTTPS server (Ray Client passthrough, or gateway.http.enabled=false)" -}}
{{- end -}}
{{- if and (not $gw.existingGateway) $gw.https.enabled (not $gw.https.credentialName) (or $r.dashboard.enabled $r.serve.enabled (and $r.client.enabled (eq $r.client.mode "grpc"))) -}}
{{- $problems = append $problems "gateway.https.credentialName: \"\": the HTTPS server terminates TLS and needs a TLS Secret in the gateway's namespace" -}}
{{- end -}}
{{- if and $gw.http.httpsRedirect (not $gw.https.enabled) (not $gw.existingGateway) -}}
{{- $problems = append $problems "gateway.http.httpsRedirect: true needs gateway.https.enabled=true" -}}
{{- end -}}
{{- $guarded := or $r.dashboard.enabled (and $r.client.enabled (eq $r.client.mode "grpc")) -}}
{{- if and $guarded (not $gw.auth.jwtIssuer) (not $v.rayAuth.enabled) (not $gw.acknowledgeUnauthenticated) -}}
{{- $problems = append $problems "gateway.auth.jwtIssuer: \"\": the dashboard, Jobs API and Ray Client execute arbitrary code for whoever reaches them (CVE-2023-48022). Set gateway.auth.jwtIssuer and jwksUri, or rayAuth.enabled=true, or gateway.acknowledgeUnauthenticated=true if something else guards them" -}}
{{- end -}}
{{- if and $gw.auth.jwtIssuer (not $gw.auth.jwksUri) -}}
{{- $problems = append $problems (printf "gateway.auth.jwksUri: \"\": gateway.auth.jwtIssuer=%q needs the issuer's JWKS URI" $gw.auth.jwtIssuer) -}}
{{- end -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}
