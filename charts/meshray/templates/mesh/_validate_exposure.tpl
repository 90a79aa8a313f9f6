{{/*
Checks of what the mesh shows and to whom: the Services' exportTo and extra
PeerAuthentications that would reach the Ray pods. Each define is one rule family of the
chart's validation (see ../_validate.tpl): it returns its problems as a JSON list of messages
and never calls fail.
Usage: include "meshray.validate.<family>" (dict "ctx" $ "model" $m) | fromJsonArray
*/}}

{{/* service.exportTo: the Ray pods call each other through these Services, so the release's
own namespace must see them ("." or "*"), and "~" (visible nowhere) stands alone. */}}
{{- define "meshray.validate.exportTo" -}}
{{- $to := .ctx.Values.service.exportTo | default list -}}
{{- $problems := list -}}
{{- $seen := dict -}}
{{- range $to -}}
{{- if hasKey $seen . -}}
{{- $problems = append $problems (printf "service.exportTo: %q is listed twice" .) -}}
{{- end -}}
{{- $_ := set $seen . true -}}
{{- end -}}
{{- if and (has "~" $to) (gt (len $to) 1) -}}
{{- $problems = append $problems (printf "service.exportTo: %q hides the Services from every namespace and cannot be combined with other entries (got %s)" "~" (toJson $to)) -}}
{{- else if not (or (has "." $to) (has "*" $to) (has .ctx.Release.Namespace $to)) -}}
{{- $problems = append $problems (printf "service.exportTo: %s hides the Ray Services from the Ray pods' own namespace %q, so the sidecars have no route between Ray nodes; include \".\"" (toJson $to) .ctx.Release.Namespace) -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}

{{/* mtls.extraPolicies are for other workloads: one whose selector also matches the Ray pods
(a ray.io/ label, or only labels the Ray pods carry) would replace the chart's STRICT policy
for them. (An empty selector is the schema's: matchLabels needs at least one label.) */}}
{{- define "meshray.validate.extraPolicies" -}}
{{- $v := .ctx.Values -}}
{{- $problems := list -}}
{{- $rayLabels := merge (dict) ($v.commonLabels | default dict) ($v.head.labels | default dict) ($v.workerDefaults.labels | default dict) -}}
{{- range $i, $p := ($v.mtls.extraPolicies | default list) -}}
{{- $sel := $p.matchLabels | default dict -}}
{{- $mode := $p.mode | default "PERMISSIVE" -}}
{{- $rayKey := "" -}}
{{- $allRay := true -}}
{{- range $k, $val := $sel -}}
{{- if hasPrefix "ray.io/" $k -}}{{- $rayKey = $k -}}{{- end -}}
{{- if ne (toString (get $rayLabels $k)) (toString $val) -}}{{- $allRay = false -}}{{- end -}}
{{- end -}}
{{- if or $rayKey $allRay -}}
{{- $problems = append $problems (printf "mtls.extraPolicies[%d]: %q (mode %s) selects the Ray pods (matchLabels %s) and would weaken their STRICT mTLS; use mtls.portLevelMtls for a Ray port exception" $i $p.name $mode (toJson $sel)) -}}
{{- end -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}
