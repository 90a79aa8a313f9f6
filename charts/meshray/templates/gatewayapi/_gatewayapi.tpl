{{/*
Facts about the Kubernetes Gateway API objects (gatewayAPI.*) shared by the templates in this
folder. The Service they route to, the gateway's AuthorizationPolicy and the JWT objects are
the gateway folder's (../gateway/), shared with the Istio gateway path.
*/}}

{{/*
The routes that are on, in a fixed order, each as {name, kind, host, prefix, port, listener,
protocol}: kind HTTPRoute, GRPCRoute or TLSRoute; port from the port map ($m.headPorts);
listener: the rendered Gateway's listener (section) it attaches to; protocol: that listener's.
Usage: include "meshray.gatewayAPI.routes" (dict "ctx" $ "model" $m) | fromJsonArray
*/}}
{{- define "meshray.gatewayAPI.routes" -}}
{{- $r := .ctx.Values.gatewayAPI.routes -}}
{{- $p := .model.headPorts -}}
{{- $out := list -}}
{{- if $r.dashboard.enabled -}}
{{- $out = append $out (dict "name" "dashboard" "kind" "HTTPRoute" "host" $r.dashboard.host "prefix" $r.dashboard.pathPrefix "port" (int $p.dashboard)
  "listener" "https-dashboard" "protocol" "HTTPS") -}}
{{- end -}}
{{- if $r.serve.enabled -}}
{{- $out = append $out (dict "name" "serve" "kind" "HTTPRoute" "host" $r.serve.host "prefix" $r.serve.pathPrefix "port" (int $p.serve) "listener"
  "https-serve" "protocol" "HTTPS") -}}
{{- end -}}
{{- if $r.client.enabled -}}
{{- if eq $r.client.mode "passthrough" -}}
{{- $out = append $out (dict "name" "client" "kind" "TLSRoute" "host" $r.client.host "port" (int $p.client) "listener" "tls-client" "protocol" "TLS") -}}
{{- else -}}
{{- $out = append $out (dict "name" "client" "kind" "GRPCRoute" "host" $r.client.host "port" (int $p.client) "listener" "https-client" "protocol" "HTTPS") -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
The namespace the routes live in: the release's, or the existing Gateway's with
gatewayAPI.routesInGatewayNamespace.
Usage: include "meshray.gatewayAPI.routeNamespace" .
*/}}
{{- define "meshray.gatewayAPI.routeNamespace" -}}
{{- if .Values.gatewayAPI.routesInGatewayNamespace -}}
{{- include "meshray.gatewayNamespace" . -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}
