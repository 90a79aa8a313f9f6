{{/*
The render model: the port map, its views and the worker groups, computed ONCE per render and
shared by every template (a 10-group cluster with 200 worker ports would otherwise rebuild the
port list for each group, env block and Service).

Helm gives every template of a chart the same .Values map, so the first template that needs
the model builds it and keeps it there under the private key "_meshrayModel"; every later
template reuses it. The key never reaches the output: no template prints .Values whole, helm
neither prints nor stores the map templates render with (tests/render/test_render_model.py checks
manifests, NOTES and --debug values), and values.schema.json (additionalProperties: false)
refuses the key in a values file.
Usage, at the top of a template:
  {{- include "meshray.model" . -}}
  {{- $m := .Values._meshrayModel -}}
and pass $m on to helpers in their dict: (dict "ctx" $ "model" $m ...).
Contents: ports, workerPorts, workerRange, workerPortsKey, workerProtocol (meshray.model.ports);
servicePorts, containerPorts, headPorts, pinned, ownedFlags, env, podFqdn, portMapChecksum
(meshray.model.portViews, both in _ports.tpl); groups, groupSources (meshray.model.groups, below).
*/}}
{{- define "meshray.model" -}}
{{- if not (hasKey .Values "_meshrayModel") -}}
{{- $m := dict -}}
{{- include "meshray.model.ports" (dict "ctx" . "model" $m) -}}
{{- include "meshray.model.portViews" (dict "ctx" . "model" $m) -}}
{{- include "meshray.model.groups" (dict "ctx" . "model" $m) -}}
{{- $_ := set .Values "_meshrayModel" $m -}}
{{- end -}}
{{- end -}}

{{/*
The worker groups after applying workerDefaults, as $m.groups: a list of {name, values} sorted
by name. An empty workerGroups map gives one group named "workergroup". rayStartParams,
nodeSelector, annotations and labels merge key by key; every other key replaces the default.
And $m.groupSources: where per-group values come from, as written (before workerDefaults
applies), with the key path validation messages name: [{key, v}] for head, workerDefaults and
each workerGroups entry.
Usage: include "meshray.model.groups" (dict "ctx" $ "model" $m)
*/}}
{{- define "meshray.model.groups" -}}
{{- $v := .ctx.Values -}}
{{- $groups := $v.workerGroups | default (dict "workergroup" dict) -}}
{{- $out := list -}}
{{- range $name := keys $groups | sortAlpha -}}
{{- $g := deepCopy $v.workerDefaults -}}
{{- range $k, $val := (get $groups $name | default dict) -}}
{{- if and (has $k (list "rayStartParams" "nodeSelector" "annotations" "labels")) (kindIs "map" $val) (kindIs "map" (get $g $k)) -}}
{{- $_ := set $g $k (merge (deepCopy $val) (get $g $k)) -}}
{{- else -}}
{{- $_ := set $g $k $val -}}
{{- end -}}
{{- end -}}
{{- $out = append $out (dict "name" $name "values" $g) -}}
{{- end -}}
{{- $_ := set .model "groups" $out -}}
{{- $sources := list (dict "key" "head" "v" $v.head) (dict "key" "workerDefaults" "v" $v.workerDefaults) -}}
{{- range $name, $g := $v.workerGroups -}}
{{- $sources = append $sources (dict "key" (printf "workerGroups.%s" $name) "v" ($g | default dict)) -}}
{{- end -}}
{{- $_ := set .model "groupSources" $sources -}}
{{- end -}}
