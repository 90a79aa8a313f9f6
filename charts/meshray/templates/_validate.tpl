{{/*
Validation: the cross-field checks a schema cannot express. values.schema.json (generated
from values.schema.yamale) already enforces types, enums and port ranges. The checks are rule
families, one define each, kept beside what they check: cluster/_validate.tpl (names, port
map, per-group values, versions), cluster/_validate_inputs.tpl (ports Istio owns, the Ray
image, env and volumes), cluster/_validate_security.tpl (the pods' identity and restricted
Pod Security), cluster/_validate_workload.tpl (the workload kind and a RayJob's fields),
mesh/_validate.tpl (mTLS), mesh/_validate_capture.tpl (Istio keys on the pods), mesh/_validate_exposure.tpl (exportTo,
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
{{- toJson (list "names" "workerPorts" "uniquePorts" "istioPorts" "rayImage" "rayStartParams" "podLabels"
  "objectLabels" "podEnv" "podVolumes" "replicas" "identity" "podSecurity" "meshCapture" "mtls" "exportTo"
  "extraPolicies" "meshCost" "authorization" "ingress" "rayAuth" "serveModes" "workload" "gateway"
  "gatewayAPI" "ambient" "upgrade") -}}
{{- end -}}

{{/*
The risks the values acknowledge (each a protection the values switch off on purpose), as a
JSON list of ids: `mesh-capture` (mesh.acknowledgeCaptureOverrides), `shared-identity`
(serviceAccount.acknowledgeShared), `unrestricted-pods` (podSecurity.acknowledgeUnrestricted),
each only when the values really use it. The RayCluster carries them as the annotation
meshray.io/acknowledged, so `meshray audit` reports those findings as warnings, not errors,
and a reviewer sees them in the manifests.
Usage: include "meshray.acknowledged" . | fromJsonArray
*/}}
{{- define "meshray.acknowledged" -}}
{{- $v := .Values -}}
{{- $out := list -}}
{{- if and $v.mesh.acknowledgeCaptureOverrides (include "meshray.captureOverrides" . | fromJsonArray) -}}
{{- $out = append $out "mesh-capture" -}}
{{- end -}}
{{- if and $v.serviceAccount.acknowledgeShared (include "meshray.sharedIdentities" . | fromJsonArray) -}}
{{- $out = append $out "shared-identity" -}}
{{- end -}}
{{- if and $v.podSecurity.acknowledgeUnrestricted (include "meshray.podSecurityExceptions" . | fromJsonArray) -}}
{{- $out = append $out "unrestricted-pods" -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
Settings of a feature that is switched off: nothing renders them, so values that set them
promise something the cluster will not have. One message per set (truthy) setting, naming the
key, its value and the switch; the families of the gateway, Gateway API and Ingress call it.
Usage: include "meshray.offSettings" (dict "switch" "gateway.enabled" "set" (dict "gateway.https.enabled" $x ...)) | fromJsonArray
*/}}
{{- define "meshray.offSettings" -}}
{{- $out := list -}}
{{- range $key := keys .set | sortAlpha -}}
{{- $val := get $.set $key -}}
{{- if $val -}}
{{- $out = append $out (printf "%s: %s, but %s is false, so nothing renders it; set %s=true, or remove %s" $key (toJson $val) $.switch $.switch $key) -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}
