{{/*
Facts about the gateway in front of the cluster: the Istio ingress gateway (gateway.*) or a
Gateway API Gateway (gatewayAPI.*). The two are never on together (gatewayapi/_validate.tpl),
so gateway/'s Service, policies and JWT objects serve whichever is on; gatewayapi/'s routes
and mesh/'s NetworkPolicy read the same facts here.
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

{{/*
The in-mesh callers the values admit to a JWT-guarded head port, who reach it with their mTLS
identity instead of a JWT (the require-JWT DENY rule leaves them out): per port kind
("dashboard", "client"), a list of {key, principal}, key naming the values entry it came from.
mesh.authorizationPolicy's lists count only while that policy is on, extraPrincipals only while
the gateway's own policy is: an identity no ALLOW rule admits has nothing to be spared from.
Usage: include "meshray.jwtExemptPrincipals" . | fromJson
*/}}
{{- define "meshray.jwtExemptPrincipals" -}}
{{- $section := include "meshray.frontSection" . -}}
{{- $gw := index .Values $section -}}
{{- $mp := .Values.mesh.authorizationPolicy -}}
{{- $out := dict "dashboard" (list) "client" (list) -}}
{{- if $mp.enabled -}}
{{- range $kind := list "dashboard" "client" -}}
{{- range $i, $p := get $mp (printf "%sPrincipals" $kind) -}}
{{- $_ := set $out $kind (append (get $out $kind) (dict "key" (printf "mesh.authorizationPolicy.%sPrincipals[%d]" $kind $i) "principal" $p)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $gw.authorizationPolicy.enabled -}}
{{- range $i, $p := $gw.authorizationPolicy.extraPrincipals -}}
{{- $e := dict "key" (printf "%s.authorizationPolicy.extraPrincipals[%d]" $section $i) "principal" $p -}}
{{- range $kind := list "dashboard" "client" -}}
{{- $_ := set $out $kind (append (get $out $kind) $e) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
The entries of meshray.jwtExemptPrincipals whose pattern matches the gateway's own principal
(`*`, a `*suffix` or `prefix*` it fits, or itself): requests the gateway forwards would pass
the require-JWT policy without a token. Each once, as a JSON list of {key, principal, front}.
Usage: include "meshray.jwtSparedGateway" . | fromJsonArray
*/}}
{{- define "meshray.jwtSparedGateway" -}}
{{- $front := include "meshray.frontPrincipal" . -}}
{{- $out := list -}}
{{- $seen := dict -}}
{{- range $kind, $entries := include "meshray.jwtExemptPrincipals" . | fromJson -}}
{{- range $entries -}}
{{- $p := .principal -}}
{{- $hit := or (eq $p "*") (eq $p $front) (and (hasPrefix "*" $p) (hasSuffix (trimPrefix "*" $p) $front)) (and (hasSuffix "*" $p)
  (hasPrefix (trimSuffix "*" $p) $front)) -}}
{{- if and $hit (not (hasKey $seen .key)) -}}
{{- $_ := set $seen .key true -}}
{{- $out = append $out (dict "key" .key "principal" $p "front" $front) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}
