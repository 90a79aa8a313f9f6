{{/*
Labels, selectors and object metadata. Every rendered object's metadata comes from
"meshray.metadata"; every selector of the cluster's pods from the two selector defines.
Also the labels of the Ray pods (meshray.podTemplateLabels, meshray.podLabels) and of the
ambient data plane (meshray.ambientPodLabels, meshray.ambientServiceLabels): cluster/ writes
them, mesh/ checks policies against them.
*/}}

{{/*
The common labels of every rendered object (plus commonLabels).
Usage: include "meshray.labels" .
*/}}
{{- define "meshray.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "meshray.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/version: {{ .Values.ray.version | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- /* The user's commonLabels part-of (a platform name) replaces the cluster's, never doubles it. */}}
{{- if not (hasKey (.Values.commonLabels | default dict) "app.kubernetes.io/part-of") }}
app.kubernetes.io/part-of: {{ include "meshray.clusterName" . | quote }}
{{- end }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Every pod of the cluster. A RayCluster's: `ray.io/cluster`, which KubeRay puts on each of them.
A RayJob's cluster gets a name the operator generates, so its pods are selected by
`meshray.io/cluster`, which the chart's pod templates carry ("meshray.generatedClusterLabels")
and the operator copies onto every Pod it creates from them.
Usage: include "meshray.selectorLabels" . | nindent N
*/}}
{{- define "meshray.selectorLabels" -}}
{{- if eq .Values.workload.kind "RayCluster" -}}
ray.io/cluster: {{ include "meshray.clusterName" . | quote }}
{{- else -}}
{{ include "meshray.generatedClusterLabels" . }}
{{- end -}}
{{- end -}}

{{/*
The label a generated-name cluster's pod templates carry (workload.kind other than RayCluster),
as YAML; empty for a RayCluster, whose pods KubeRay labels with its name.
Usage: include "meshray.generatedClusterLabels" . | fromYaml
*/}}
{{- define "meshray.generatedClusterLabels" -}}
{{- if ne .Values.workload.kind "RayCluster" -}}
meshray.io/cluster: {{ include "meshray.clusterName" . | quote }}
{{- end -}}
{{- end -}}

{{/*
The RayJob submitter's pods (K8sJobMode): the label the chart puts on the submitter Pod
template, for the NetworkPolicy rule that admits them to the dashboard port.
Usage: include "meshray.submitterSelectorLabels" . | fromYaml
*/}}
{{- define "meshray.submitterSelectorLabels" -}}
meshray.io/submitter: {{ include "meshray.clusterName" . | quote }}
{{- end -}}

{{/*
The head pod only (KubeRay's ray.io/node-type label).
Usage: include "meshray.headSelectorLabels" . | nindent N
*/}}
{{- define "meshray.headSelectorLabels" -}}
{{ include "meshray.selectorLabels" . }}
ray.io/node-type: head
{{- end -}}

{{/*
Object metadata annotations: commonAnnotations plus the Argo CD sync wave given as argument.
Usage: include "meshray.annotations" (dict "ctx" $ "wave" "-1" "extra" $map)
*/}}
{{- define "meshray.annotations" -}}
{{- $a := dict "argocd.argoproj.io/sync-wave" .wave -}}
{{- $a = merge $a (.extra | default dict) (.ctx.Values.commonAnnotations | default dict) -}}
{{ toYaml $a }}
{{- end -}}

{{/*
Object metadata: name, namespace, common labels + component, annotations with the Argo CD
sync wave (Services and policies -1, the RayCluster 0, routes 1).
Usage: include "meshray.metadata" (dict "ctx" $ "name" $n "component" "x" "wave" "-1"
                                        ["labels" $map] ["annotations" $map] ["namespace" $ns])
("namespace": another namespace than the release's, for Gateway API routes that live in
their Gateway's namespace.)
*/}}
{{- define "meshray.metadata" -}}
name: {{ .name | quote }}
namespace: {{ .namespace | default .ctx.Release.Namespace | quote }}
labels:
  {{- include "meshray.labels" .ctx | nindent 2 }}
  app.kubernetes.io/component: {{ .component }}
  {{- with .labels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  {{- include "meshray.annotations" (dict "ctx" .ctx "wave" .wave "extra" .annotations) | nindent 2 }}
{{- end -}}

{{/*
The labels of a group's pod template, as JSON: the mesh enrolment (ambient labels from
meshray.ambientPodLabels below, or `sidecar.istio.io/inject: "true"`) and, for a cluster the operator names
(a RayJob's), `meshray.io/cluster`, under the group's own labels.
Usage: include "meshray.podTemplateLabels" (dict "ctx" $ "group" $values) | fromJson
*/}}
{{- define "meshray.podTemplateLabels" -}}
{{- $labels := dict -}}
{{- if eq .ctx.Values.mesh.dataplane "ambient" -}}
{{- /* Ambient enrolment (meshray.ambientPodLabels): no sidecar, ztunnel; the waypoint for L7. */ -}}
{{- $labels = include "meshray.ambientPodLabels" .ctx | fromJson -}}
{{- else if .ctx.Values.mesh.injectSidecar -}}
{{- $_ := set $labels "sidecar.istio.io/inject" "true" -}}
{{- end -}}
{{- $labels = merge $labels (include "meshray.generatedClusterLabels" .ctx | fromYaml) -}}
{{- toJson (merge (deepCopy (.group.labels | default dict)) $labels) -}}
{{- end -}}

{{/*
Every label a group's Ray pods will carry, as JSON: the pod template's labels over the ones
KubeRay's operator adds itself (labelPod: ray.io/is-ray-node, ray.io/identifier,
app.kubernetes.io/name and created-by, which the template may override, and ray.io/cluster,
node-type and group, which it may not). For guards that must know what selects a Ray pod.
Usage: include "meshray.podLabels" (dict "ctx" $ "group" $values "head" true|false "name" $groupName)
*/}}
{{- define "meshray.podLabels" -}}
{{- $cluster := include "meshray.clusterName" .ctx -}}
{{- $type := ternary "head" "worker" .head -}}
{{- $labels := dict "ray.io/is-ray-node" "yes" "ray.io/identifier" (printf "%s-%s" $cluster $type) "app.kubernetes.io/name" "kuberay"
  "app.kubernetes.io/created-by" "kuberay-operator" -}}
{{- $labels = mergeOverwrite $labels (include "meshray.podTemplateLabels" (dict "ctx" .ctx "group" .group) | fromJson) -}}
{{- if eq .ctx.Values.workload.kind "RayCluster" -}}
{{- $_ := set $labels "ray.io/cluster" $cluster -}}
{{- end -}}
{{- $_ := set $labels "ray.io/node-type" $type -}}
{{- $_ := set $labels "ray.io/group" .name -}}
{{- toJson $labels -}}
{{- end -}}

{{/*
The labels that enrol a Ray pod in ambient mode, as JSON: istio-cni redirects a pod labelled
`istio.io/dataplane-mode: ambient` to ztunnel (istio-cni's default enablement selectors);
`istio.io/use-waypoint` sends traffic addressed to the pod through the waypoint.
Usage: include "meshray.ambientPodLabels" . | fromJson
*/}}
{{- define "meshray.ambientPodLabels" -}}
{{- $out := dict "istio.io/dataplane-mode" "ambient" -}}
{{- if and .Values.mesh.waypoint.enabled (ne .Values.mesh.waypoint.for "service") -}}
{{- $_ := set $out "istio.io/use-waypoint" (include "meshray.waypointName" .) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
The labels that send Service-addressed traffic (a Service VIP: KubeRay's head Service, which
Ray's workers and clients dial for the GCS, dashboard and Ray Client) through the waypoint,
as JSON: istio.io/use-waypoint when the waypoint is for `service` or `all` traffic.
Usage: include "meshray.ambientServiceLabels" . | fromJson
*/}}
{{- define "meshray.ambientServiceLabels" -}}
{{- $out := dict -}}
{{- $w := .Values.mesh.waypoint -}}
{{- if and (eq .Values.mesh.dataplane "ambient") $w.enabled (ne $w.for "workload") -}}
{{- $_ := set $out "istio.io/use-waypoint" (include "meshray.waypointName" .) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}
