{{/*
The RayJob submitter (workload.kind=RayJob, submissionMode K8sJobMode): the Pod of the Job the
operator creates once the job's RayCluster is Ready. KubeRay keeps a given template as it is and
only fills in the first container's command (when empty) and appends its env
(RAY_DASHBOARD_ADDRESS, RAY_JOB_SUBMISSION_ID), so everything the mesh needs is set here.
*/}}

{{/*
The submitter Pod template: rayJob.submitterPodTemplate with the chart's additions.
- labels: the mesh enrolment of the Ray pods and meshray.io/submitter (NetworkPolicy);
- annotations: a native sidecar (sidecar dataplane), so istio-proxy starts before the submitter
  and does not keep the Job's Pod running after it exits (istio#11045), and
  holdApplicationUntilProxyStarts when the values ask for it;
- serviceAccountName: the submitter's own identity (meshray.submitterServiceAccountName);
- restartPolicy Never (KubeRay does not default it for a given template; a Job requires one);
- podSecurity.pod and podSecurity.container under the template's own securityContexts;
- a `ray-job-submitter` container with the Ray image when the template has none, and the Ray
  image for a first container without one (KubeRay fills in neither for a given template).
The template's own keys win over the chart's defaults, never over its mesh labels.
Usage: include "meshray.submitterPodTemplate" . | nindent N
*/}}
{{- define "meshray.submitterPodTemplate" -}}
{{- $v := .Values -}}
{{- $t := deepCopy ($v.rayJob.submitterPodTemplate | default dict) -}}
{{- $meta := get $t "metadata" | default dict -}}
{{- $spec := get $t "spec" | default dict -}}
{{- /* the Ray pods' mesh enrolment, without the label that makes a Pod one of the cluster's */ -}}
{{- $labels := omit (include "meshray.podTemplateLabels" (dict "ctx" . "group" (dict)) | fromJson) "meshray.io/cluster" -}}
{{- $labels = mergeOverwrite (deepCopy (get $meta "labels" | default dict)) $labels (include "meshray.submitterSelectorLabels" . | fromYaml) -}}
{{- $annotations := dict -}}
{{- if and (ne $v.mesh.dataplane "ambient") $v.mesh.injectSidecar -}}
{{- $_ := set $annotations "sidecar.istio.io/nativeSidecar" "true" -}}
{{- if $v.mesh.holdApplicationUntilProxyStarts -}}
{{- $_ := set $annotations "proxy.istio.io/config" "{\"holdApplicationUntilProxyStarts\": true}" -}}
{{- end -}}
{{- end -}}
{{- $annotations = merge (deepCopy (get $meta "annotations" | default dict)) $annotations -}}
{{- $group := dict "podSecurityContext" (get $spec "securityContext") "securityContext" dict -}}
{{- $security := include "meshray.securityContexts" (dict "ctx" . "group" $group) | fromJson -}}
{{- $containers := get $spec "containers" | default (list (dict "name" "ray-job-submitter")) -}}
{{- $out := list -}}
{{- range $i, $c := $containers -}}
{{- $c = deepCopy $c -}}
{{- if not (get $c "image") -}}
{{- $_ := set $c "image" (include "meshray.rayImage" $) -}}
{{- end -}}
{{- if and (eq $i 0) (not (hasKey $c "resources")) -}}
{{- /* KubeRay's own default submitter resources */ -}}
{{- $_ := set $c "resources" (dict "requests" (dict "cpu" "500m" "memory" "200Mi") "limits" (dict "cpu" "1" "memory" "1Gi")) -}}
{{- end -}}
{{- $sc := mergeOverwrite (deepCopy $security.container) (deepCopy (get $c "securityContext" | default dict)) -}}
{{- if $sc -}}
{{- $_ := set $c "securityContext" $sc -}}
{{- end -}}
{{- $out = append $out $c -}}
{{- end -}}
{{- $spec = mergeOverwrite (dict "restartPolicy" "Never" "automountServiceAccountToken" false) $spec -}}
{{- $_ := set $spec "serviceAccountName" (include "meshray.submitterServiceAccountName" .) -}}
{{- $_ := set $spec "containers" $out -}}
{{- with $security.pod -}}
{{- $_ := set $spec "securityContext" . -}}
{{- end -}}
{{- $_ := set $meta "labels" $labels -}}
{{- with $annotations -}}
{{- $_ := set $meta "annotations" . -}}
{{- end -}}
{{- toYaml (dict "metadata" $meta "spec" $spec) -}}
{{- end -}}
