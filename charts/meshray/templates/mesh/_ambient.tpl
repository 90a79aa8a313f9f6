{{/*
The ambient data plane (mesh.dataplane=ambient): the Ray pods are enrolled in ambient mode by
label instead of getting an injected sidecar; ztunnel carries every port over HBONE (mTLS) and
enforces the Ray pods' AuthorizationPolicy (principals and ports: L4). An optional waypoint
(mesh.waypoint) gives L7 to traffic addressed to the Ray pods. What istiod sends ztunnel and
the waypoint for these labels was measured with the real istiod (tests/mesh/test_ambient.py,
docs/ambient.md). The enrolment labels themselves are root helpers (../_labels.tpl), since
cluster/ writes them.
*/}}

{{/* Ambient: options that only mean something with a sidecar, and L7 checks ztunnel cannot do. */}}
{{- define "meshray.validate.ambient" -}}
{{- $v := .ctx.Values -}}
{{- $problems := list -}}
{{- if ne $v.mesh.dataplane "ambient" -}}
{{- if $v.mesh.waypoint.enabled -}}
{{- $problems = append $problems (printf (print "mesh.waypoint.enabled: true needs mesh.dataplane=ambient (got %q): a waypoint serves "
  "ambient pods only; set mesh.dataplane=ambient or mesh.waypoint.enabled=false") $v.mesh.dataplane) -}}
{{- end -}}
{{- else -}}
{{- if $v.mesh.sidecar.enabled -}}
{{- $problems = append $problems (print "mesh.sidecar.enabled: true scopes the egress of the Ray pods' istio-proxy sidecars, and "
  "mesh.dataplane \"ambient\" runs none: set mesh.sidecar.enabled=false") -}}
{{- end -}}
{{- range .model.groupSources -}}
{{- $key := .key -}}
{{- range $k, $val := (.v.annotations | default dict) -}}
{{- if or (hasPrefix "sidecar.istio.io/" $k) (hasPrefix "proxy.istio.io/" $k) -}}
{{- $problems = append $problems (printf "%s.annotations.%s: %q configures an istio-proxy sidecar, and mesh.dataplane \"ambient\" runs none; remove it"
  $key $k (toString $val)) -}}
{{- end -}}
{{- end -}}
{{- range $k, $val := (.v.labels | default dict) -}}
{{- if or (eq $k "sidecar.istio.io/inject") (eq $k "istio.io/dataplane-mode") (eq $k "istio.io/use-waypoint") -}}
{{- $problems = append $problems (printf (print "%s.labels.%s: %q would override the ambient enrolment the chart sets for mesh.dataplane "
  "\"ambient\" (istio.io/dataplane-mode, istio.io/use-waypoint from mesh.waypoint); remove it") $key $k (toString $val)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $section := list "gateway" "gatewayAPI" -}}
{{- $gw := index $v $section -}}
{{- if and $gw.enabled $gw.auth.jwtIssuer -}}
{{- $problems = append $problems (printf (print "%s.auth.jwtIssuer: %q is checked by the head's istio-proxy sidecar (a "
  "RequestAuthentication and an L7 AuthorizationPolicy selecting the head), and mesh.dataplane \"ambient\" runs none: ztunnel enforces L4 "
  "only. Use rayAuth.enabled, or mesh.dataplane=sidecar") $section $gw.auth.jwtIssuer) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}
