{{/*
Checks of the mesh policies: PeerAuthentication port exceptions and names.
Each define is one rule family of the chart's validation (see ../_validate.tpl): it returns
its problems as a JSON list of messages and never calls fail.
Usage: include "meshray.validate.<family>" (dict "ctx" $ "model" $m) | fromJsonArray
*/}}

{{/* PeerAuthentication: port exceptions and policy names. */}}
{{- define "meshray.validate.mtls" -}}
{{- $mtls := .ctx.Values.mtls -}}
{{- $problems := list -}}
{{- if and $mtls.enabled $mtls.portLevelMtls -}}
{{- if eq $mtls.scope "namespace" -}}
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
{{- range $mtls.portLevelMtls -}}
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
{{- range $mtls.extraPolicies -}}
{{- if hasKey $policyNames .name -}}
{{- $problems = append $problems (printf "mtls.extraPolicies: name %q is already used by another PeerAuthentication of this release" .name) -}}
{{- end -}}
{{- $_ := set $policyNames .name "extra" -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}
