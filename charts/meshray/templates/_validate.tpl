{{/*
Validation: the cross-field checks a schema cannot express. values.schema.json (generated
from values.schema.yamale) already enforces types, enums and port ranges. The checks are rule
families, one define each, kept beside what they check: cluster/_validate.tpl (names, port
map, per-group values, versions), cluster/_validate_inputs.tpl (ports Istio owns, the Ray
image, env and volumes), mesh/_validate.tpl (mTLS), mesh/_validate_exposure.tpl (exportTo,
extra PeerAuthentications), mesh/_ambient.tpl (the ambient data plane), ingress/_validate.tpl,
gateway/_validate.tpl, gatewayapi/_validate.tpl. Each family returns its problems as a JSON list of messages, one per
problem, each naming the key and the value and saying what to do; it never calls fail.
validate.yaml runs every family listed below and fails once with all their messages.
*/}}

{{/*
The rule families, in the order their messages are reported.
Usage: include "meshray.validate.families" . | fromJsonArray
*/}}
{{- define "meshray.validate.families" -}}
{{- toJson (list "names" "workerPorts" "uniquePorts" "istioPorts" "rayImage" "rayStartParams" "podLabels" "podEnv" "podVolumes" "replicas" "mtls" "exportTo" "extraPolicies" "meshCost" "authorization" "ingress" "rayAuth" "serveModes" "gateway" "gatewayAPI" "ambient" "upgrade") -}}
{{- end -}}
