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
{{- $problems = append $problems (printf "service.exportTo: %q hides the Services from every namespace and cannot be combined with other entries (got %s)"
  "~" (toJson $to)) -}}
{{- else if not (or (has "." $to) (has "*" $to) (has .ctx.Release.Namespace $to)) -}}
{{- $problems = append $problems (printf (print "service.exportTo: %s hides the Ray Services from the Ray pods' own namespace %q, so the "
  "sidecars have no route between Ray nodes; include \".\"") (toJson $to) .ctx.Release.Namespace) -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}

{{/* mtls.extraPolicies are for other workloads: one whose selector also matches a Ray pod
would replace the chart's STRICT policy for it. A selector matches a pod when every one of its
labels is on the pod: the Ray pods carry KubeRay's own labels (labelPod in the operator:
ray.io/is-ray-node, ray.io/identifier, app.kubernetes.io/name and created-by, besides
ray.io/cluster, node-type and group), the chart's mesh labels and each group's labels, so the
guard computes every Ray pod's labels that way (meshray.podLabels) and refuses a selector that
matches any of them, or names a ray.io/ label. (An empty selector is the schema's: matchLabels
needs at least one label.) */}}
{{- define "meshray.validate.extraPolicies" -}}
{{- $v := .ctx.Values -}}
{{- $problems := list -}}
{{- $pods := list (include "meshray.podLabels" (dict "ctx" .ctx "group" $v.head "head" true "name" "headgroup") | fromJson) -}}
{{- range .model.groups -}}
{{- $pods = append $pods (include "meshray.podLabels" (dict "ctx" $.ctx "group" .values "head" false "name" .name) | fromJson) -}}
{{- end -}}
{{- range $i, $p := ($v.mtls.extraPolicies | default list) -}}
{{- $sel := $p.matchLabels | default dict -}}
{{- $mode := $p.mode | default "PERMISSIVE" -}}
{{- $rayKey := "" -}}
{{- range $k, $val := $sel -}}{{- if hasPrefix "ray.io/" $k -}}{{- $rayKey = $k -}}{{- end -}}{{- end -}}
{{- $matched := "" -}}
{{- range $labels := $pods -}}
{{- $all := true -}}
{{- range $k, $val := $sel -}}
{{- if not (and (hasKey $labels $k) (eq (toString (get $labels $k)) (toString $val))) -}}{{- $all = false -}}{{- end -}}
{{- end -}}
{{- if and $all (not $matched) -}}{{- $matched = get $labels "ray.io/group" -}}{{- end -}}
{{- end -}}
{{- if or $rayKey $matched -}}
{{- $problems = append $problems (printf (print "mtls.extraPolicies[%d]: %q (mode %s) selects the Ray pods (matchLabels %s%s) and would "
  "weaken their STRICT mTLS; use mtls.portLevelMtls for a Ray port exception")
  $i $p.name $mode (toJson $sel) (ternary (printf ", which the pods of group %q carry" $matched) "" (ne $matched ""))) -}}
{{- end -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}
