{{/*
Istio keys on the Ray pods: an annotation or label can take Ray's traffic around the sidecar
or ztunnel (capture), keep the proxy out (injection) or rewrite its config, and with it STRICT
mTLS and the AuthorizationPolicy. Refused in both data planes unless
mesh.acknowledgeCaptureOverrides; the render then carries the acknowledgement and NOTES lists
each key. The rule family returns its problems as a JSON list of messages and never calls fail
(see ../_validate.tpl).
Usage: include "meshray.validate.meshCapture" (dict "ctx" $ "model" $m) | fromJsonArray
*/}}

{{/*
The Istio annotations and labels of the Ray pods' values that switch capture, injection or
proxy config, as a JSON list of {key, value}: every key in the istio.io domain or a subdomain
of it, except the proxy's resources, log levels and stats, nativeSidecar (the chart's own
mesh.nativeSidecar, which NOTES follows), Istio's canonical service labels, and what the chart
sets itself (`sidecar.istio.io/inject: "true"`). With the ambient data plane, the keys the
ambient family refuses outright are left to it.
Usage: include "meshray.captureOverrides" . | fromJsonArray
*/}}
{{- define "meshray.captureOverrides" -}}
{{- $v := .Values -}}
{{- include "meshray.model" . -}}
{{- $ambient := eq $v.mesh.dataplane "ambient" -}}
{{- $harmless := list "sidecar.istio.io/nativeSidecar" "sidecar.istio.io/proxyCPU"
  "sidecar.istio.io/proxyCPULimit" "sidecar.istio.io/proxyMemory"
  "sidecar.istio.io/proxyMemoryLimit" "sidecar.istio.io/logLevel"
  "sidecar.istio.io/componentLogLevel" "sidecar.istio.io/agentLogLevel"
  "sidecar.istio.io/statsInclusionPrefixes" "sidecar.istio.io/statsInclusionSuffixes"
  "sidecar.istio.io/statsInclusionRegexps" "sidecar.istio.io/statsHistogramBuckets"
  "prometheus.istio.io/merge-metrics" "service.istio.io/canonical-name"
  "service.istio.io/canonical-revision" -}}
{{- $ambientOwned := list "sidecar.istio.io/inject" "istio.io/dataplane-mode" "istio.io/use-waypoint" -}}
{{- $out := list -}}
{{- range $v._meshrayModel.groupSources -}}
{{- $src := . -}}
{{- range $kind := list "annotations" "labels" -}}
{{- range $k, $val := (get $src.v $kind | default dict) -}}
{{- $domain := ternary (index (splitList "/" $k) 0) "" (contains "/" $k) -}}
{{- $istio := or (eq $domain "istio.io") (hasSuffix ".istio.io" $domain) -}}
{{- $chartOwn := and (eq $k "sidecar.istio.io/inject") (eq (toString $val) "true") (eq $kind "labels") (not $ambient) -}}
{{- $proxyKey := or (hasPrefix "sidecar.istio.io/" $k) (hasPrefix "proxy.istio.io/" $k) -}}
{{- $ambientKey := ternary $proxyKey (has $k $ambientOwned) (eq $kind "annotations") -}}
{{- $leftToAmbient := and $ambient $ambientKey -}}
{{- if and $istio (not (has $k $harmless)) (not $chartOwn) (not $leftToAmbient) -}}
{{- $out = append $out (dict "key" (printf "%s.%s.%s" $src.key $kind $k) "value" (toString $val)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{- define "meshray.validate.meshCapture" -}}
{{- $problems := list -}}
{{- if not .ctx.Values.mesh.acknowledgeCaptureOverrides -}}
{{- range (include "meshray.captureOverrides" .ctx | fromJsonArray) -}}
{{- $problems = append $problems (printf (print "%s: %q is an Istio capture, injection or proxy-config key on the Ray pods: it can take "
  "Ray's traffic around the mesh proxy, and with it STRICT mTLS and the AuthorizationPolicy (the chart sets what the mesh needs from "
  "mesh.*); remove it, or set mesh.acknowledgeCaptureOverrides=true to accept it") .key .value) -}}
{{- end -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}
