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
{{- $problems = append $problems (print "mtls.portLevelMtls: Istio applies port-level mTLS only to policies with a workload selector, and "
  "mtls.scope \"namespace\" has none; use mtls.scope=cluster or drop the exceptions") -}}
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
{{- $problems = append $problems (printf (print "mtls.portLevelMtls: port %s is not a port the Ray pods listen on (portLevelMtls keys on "
  "the workload port); use one of the ports in the port map") $k) -}}
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

{{/* Authorization: the Ray pods' AuthorizationPolicy needs mTLS identities; one trust domain;
NetworkPolicy peers the API server accepts. */}}
{{- define "meshray.validate.authorization" -}}
{{- $v := .ctx.Values -}}
{{- $problems := list -}}
{{- if $v.mesh.authorizationPolicy.enabled -}}
{{- if and $v.mtls.enabled (eq $v.mtls.mode "DISABLE") -}}
{{- $problems = append $problems (print "mtls.mode: \"DISABLE\" leaves the Ray pods' peers without an mTLS identity, and "
  "mesh.authorizationPolicy.enabled=true admits peers only by that identity: Istio would deny every Ray port and Ray would hang. Use "
  "STRICT or PERMISSIVE, or set mesh.authorizationPolicy.enabled=false") -}}
{{- end -}}
{{- if $v.mtls.enabled -}}
{{- range $v.mtls.portLevelMtls -}}
{{- if eq .mode "DISABLE" -}}
{{- $problems = append $problems (printf (print "mtls.portLevelMtls: port %d is DISABLE, so its peers have no mTLS identity and "
  "mesh.authorizationPolicy.enabled=true denies it to everyone; use PERMISSIVE for that port, or set mesh.authorizationPolicy.enabled=false") (int .port)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $v.gateway.trustDomain (ne $v.gateway.trustDomain $v.mesh.trustDomain) -}}
{{- $problems = append $problems (printf (print "gateway.trustDomain: %q differs from mesh.trustDomain (%q): a mesh has one trust domain, "
  "and the chart writes the cluster's and the gateway's principals with it; set mesh.trustDomain and leave gateway.trustDomain empty")
  $v.gateway.trustDomain $v.mesh.trustDomain) -}}
{{- end -}}
{{- if $v.networkPolicy.enabled -}}
{{- $kinds := list "podSelector" "namespaceSelector" "ipBlock" -}}
{{- range $list := list "dashboardFrom" "clientFrom" "metricsFrom" "serveFrom" -}}
{{- range $i, $peer := get $v.networkPolicy $list -}}
{{- $key := printf "networkPolicy.%s[%d]" $list $i -}}
{{- $unknown := without (keys $peer | sortAlpha) "podSelector" "namespaceSelector" "ipBlock" -}}
{{- if $unknown -}}
{{- $problems = append $problems (printf "%s: %s is not a NetworkPolicy peer field (podSelector, namespaceSelector, ipBlock) (got %s)"
  $key (join ", " $unknown) (toJson $peer)) -}}
{{- else if and (hasKey $peer "ipBlock") (or (hasKey $peer "podSelector") (hasKey $peer "namespaceSelector")) -}}
{{- $problems = append $problems (printf "%s: ipBlock cannot be combined with podSelector or namespaceSelector in one peer (got %s)" $key (toJson $peer)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}
