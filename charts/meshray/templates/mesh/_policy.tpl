{{/*
What the Ray pods' AuthorizationPolicy (mesh/authorizationpolicy.yaml) and NetworkPolicy
(mesh/networkpolicy.yaml) admit, shared by both so they list the same ports: views of the port
map ($m, _model.tpl), never ports of their own.
*/}}

{{/*
The Ray ports by who may reach them, as port lists (numbers), written into .out:
  cluster    every port but the dashboard and the Ray Client, worker ports included: the
             cluster's own pods (Ray's internal traffic, metrics and Serve's proxies included)
  dashboard  the dashboard and Jobs API          client  the Ray Client server
  metrics    Prometheus endpoints (metrics export, autoscaler and dashboard metrics)
  serve      Ray Serve's proxies (serve.enabled)
  routed     what the Istio gateway routes to on the head (gateway.enabled): dashboard, client,
             Serve HTTP
Usage: include "meshray.policyPorts" (dict "ctx" $ "model" $m "out" $ports)
*/}}
{{- define "meshray.policyPorts" -}}
{{- $classes := dict "dashboard-port" "dashboard" "ray-client-server-port" "client" "metrics-export-port" "metrics" "autoscaler-metrics-port"
  "metrics" "dashboard-metrics-port" "metrics" "serve-http-port" "serve" "serve-grpc-port" "serve" -}}
{{- $out := .out -}}
{{- range $c := list "cluster" "dashboard" "client" "metrics" "serve" "routed" -}}
{{- $_ := set $out $c list -}}
{{- end -}}
{{- $r := .ctx.Values.gateway.routes -}}
{{- $routed := list -}}
{{- if .ctx.Values.gateway.enabled -}}
{{- if $r.dashboard.enabled }}{{ $routed = append $routed "dashboard-port" }}{{ end -}}
{{- if $r.client.enabled }}{{ $routed = append $routed "ray-client-server-port" }}{{ end -}}
{{- if $r.serve.enabled }}{{ $routed = append $routed "serve-http-port" }}{{ end -}}
{{- end -}}
{{- range .model.ports -}}
{{- $class := get $classes .name -}}
{{- if not (has $class (list "dashboard" "client")) -}}
{{- $_ := set $out "cluster" (append $out.cluster .port) -}}
{{- end -}}
{{- if $class -}}
{{- $_ := set $out $class (append (get $out $class) .port) -}}
{{- end -}}
{{- if has .name $routed -}}
{{- $_ := set $out "routed" (append $out.routed .port) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
One ALLOW rule of mesh/authorizationpolicy.yaml, indented for `rules:`, from a dict with `why`
(a comment), `principals` and either `ports` (what it admits) or `notPorts` (what it leaves
out). Nothing when there are no principals (Istio reads `principals: []` as any source) or no
ports; with an empty `notPorts`, a rule without `to` (every port).
Usage: include "meshray.policyRule" (dict "why" $why "principals" $list "ports" $ports)
*/}}
{{- define "meshray.policyRule" -}}
{{- if and .principals (or .ports (hasKey . "notPorts")) }}
    # {{ .why }}
    - from:
        - source:
            principals: {{ toJson .principals }}
{{- if .ports }}
      to:
        - operation:
            ports: {{ toJson (.ports | toStrings) }}
{{- else if .notPorts }}
      to:
        - operation:
            notPorts: {{ toJson (.notPorts | toStrings) }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The cluster's own identities: the principal of every service account a Ray pod runs as (the
chart's, and any group's own serviceAccountName), sorted, as a JSON list.
Usage: include "meshray.clusterPrincipals" (dict "ctx" $ "model" $m) | fromJsonArray
*/}}
{{- define "meshray.clusterPrincipals" -}}
{{- $ctx := .ctx -}}
{{- $default := include "meshray.serviceAccountName" $ctx -}}
{{- $names := list ($ctx.Values.head.serviceAccountName | default $default) -}}
{{- range .model.groups -}}
{{- $names = append $names (.values.serviceAccountName | default $default) -}}
{{- end -}}
{{- $out := list -}}
{{- range $names | uniq | sortAlpha -}}
{{- $out = append $out (include "meshray.principal" (dict "ctx" $ctx "namespace" $ctx.Release.Namespace "serviceAccount" .)) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}
