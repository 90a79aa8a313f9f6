{{/*
Facts about the gateway in front of the cluster shared by the objects in this folder: the Istio
ingress gateway (gateway.*) or a Gateway API Gateway (gatewayAPI.*, ../gatewayapi/). The two
are never on together (gatewayapi/_validate.tpl), so the Service, policies and JWT objects
here serve whichever is on.
*/}}

{{/*
The values section of the gateway that is on: gatewayAPI when gatewayAPI.enabled, else gateway
(its `enabled` says whether any is). Both have routes.{dashboard,serve,client}, auth,
acknowledgeUnauthenticated and authorizationPolicy.
Usage: $gw := include "meshray.frontSection" . ; then index .Values $gw
*/}}
{{- define "meshray.frontSection" -}}
{{- ternary "gatewayAPI" "gateway" .Values.gatewayAPI.enabled -}}
{{- end -}}

{{/*
The gateway's namespace: from existingGateway (namespace/name), else gateway.namespace (Istio
gateway) or the release namespace (the Gateway API Gateway the chart renders).
Usage: include "meshray.gatewayNamespace" .
*/}}
{{- define "meshray.gatewayNamespace" -}}
{{- $gw := index .Values (include "meshray.frontSection" .) -}}
{{- if $gw.existingGateway -}}
{{- first (splitList "/" $gw.existingGateway) -}}
{{- else if .Values.gatewayAPI.enabled -}}
{{- .Release.Namespace -}}
{{- else -}}
{{- .Values.gateway.namespace -}}
{{- end -}}
{{- end -}}

{{/*
The Gateway the routes attach to, as namespace/name: existingGateway, or the one the chart
renders.
Usage: include "meshray.gatewayRef" .
*/}}
{{- define "meshray.gatewayRef" -}}
{{- $gw := index .Values (include "meshray.frontSection" .) -}}
{{- $gw.existingGateway | default (printf "%s/%s" .Release.Namespace (include "meshray.gatewayName" .)) -}}
{{- end -}}

{{/*
The principal of the gateway's pods: gateway.serviceAccount for the Istio gateway; for a
Gateway API Gateway gatewayAPI.serviceAccount, else `<gateway name>-<gatewayClassName>`, the
ServiceAccount istiod creates for the deployment it runs for a Gateway.
Usage: include "meshray.frontPrincipal" .
*/}}
{{- define "meshray.frontPrincipal" -}}
{{- if .Values.gatewayAPI.enabled -}}
{{- $ga := .Values.gatewayAPI -}}
{{- $name := last (splitList "/" (include "meshray.gatewayRef" .)) -}}
{{- $sa := $ga.serviceAccount | default (printf "%s-%s" $name $ga.gatewayClassName) -}}
{{- include "meshray.principal" (dict "ctx" . "namespace" (include "meshray.gatewayNamespace" .) "serviceAccount" $sa) -}}
{{- else -}}
{{- include "meshray.gatewayPrincipal" . -}}
{{- end -}}
{{- end -}}

{{/*
The head ports the gateway's routes reach (dashboard, Ray Client, Serve HTTP, in port-map
order), as a JSON list of strings: views of the port map ($m.headPorts), never numbers of
their own.
Usage: include "meshray.frontRoutedPorts" (dict "ctx" $ "model" $m) | fromJsonArray
*/}}
{{- define "meshray.frontRoutedPorts" -}}
{{- $r := (index .ctx.Values (include "meshray.frontSection" .ctx)).routes -}}
{{- $p := .model.headPorts -}}
{{- $out := list -}}
{{- if $r.dashboard.enabled }}{{ $out = append $out (toString (int $p.dashboard)) }}{{ end -}}
{{- if $r.client.enabled }}{{ $out = append $out (toString (int $p.client)) }}{{ end -}}
{{- if $r.serve.enabled }}{{ $out = append $out (toString (int $p.serve)) }}{{ end -}}
{{- toJson $out -}}
{{- end -}}
