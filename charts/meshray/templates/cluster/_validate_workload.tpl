{{/*
Checks of the workload kind (workload.kind) and of a RayJob's own fields (rayJob.*): what the
operator version has (kuberay.version), what KubeRay itself would refuse later or silently
ignore, and what would leave the job's Pods or its submitter outside the mesh's contract. One
rule family (see ../_validate.tpl): it returns its problems as a JSON list of messages and
never calls fail.
Usage: include "meshray.validate.workload" (dict "ctx" $ "model" $m) | fromJsonArray
*/}}

{{/*
The KubeRay release that added each RayJob field or submission mode this chart passes through
(read from KubeRay's CRDs and controllers, v1.1.0 to v1.7.0), as JSON {what: version}.
Usage: include "meshray.kuberayFieldVersions" . | fromJson
*/}}
{{- define "meshray.kuberayFieldVersions" -}}
{{- toJson (dict "rayJob.backoffLimit" "1.2.0" "rayJob.submitterConfig" "1.2.0" "rayJob.deletionStrategy" "1.5.0"
  "rayJob.submissionMode: InteractiveMode" "1.3.0" "rayJob.submissionMode: SidecarMode" "1.5.0"
  "rayAuth.enabled" "1.5.1" "kuberay.upgradeStrategy" "1.6.0") -}}
{{- end -}}

{{- define "meshray.validate.workload" -}}
{{- $v := .ctx.Values -}}
{{- $j := $v.rayJob -}}
{{- $kuberay := $v.kuberay.version -}}
{{- $problems := list -}}
{{- $job := eq $v.workload.kind "RayJob" -}}
{{- /* fields each KubeRay release added: the operator's CRD would refuse (or prune) them */ -}}
{{- $used := dict "rayAuth.enabled" $v.rayAuth.enabled "kuberay.upgradeStrategy" (and (eq $v.workload.kind "RayCluster") $v.kuberay.upgradeStrategy) -}}
{{- if $job -}}
{{- $_ := set $used "rayJob.backoffLimit" (gt (int $j.backoffLimit) 0) -}}
{{- $_ := set $used "rayJob.submitterConfig" (not (empty $j.submitterConfig)) -}}
{{- $_ := set $used "rayJob.deletionStrategy" (not (empty $j.deletionStrategy)) -}}
{{- $_ := set $used (printf "rayJob.submissionMode: %s" $j.submissionMode) true -}}
{{- end -}}
{{- range $what, $since := include "meshray.kuberayFieldVersions" .ctx | fromJson -}}
{{- if and (get $used $what) (semverCompare (printf "<%s-0" $since) $kuberay) -}}
{{- $problems = append $problems (printf (print "%s: needs KubeRay >= %s, and kuberay.version is %q (the operator's CRD lacks the field); "
  "upgrade the operator and set kuberay.version, or leave it out") $what $since $kuberay) -}}
{{- end -}}
{{- end -}}
{{- if not $job -}}
{{- range $key := list "entrypoint" "runtimeEnvYAML" "clusterSelector" "submitterPodTemplate" "deletionStrategy" "submitterConfig" -}}
{{- if not (empty (get $j $key)) -}}
{{- $val := get $j $key -}}
{{- $problems = append $problems (printf "rayJob.%s: %s is set, but workload.kind is %q, which ignores rayJob.*; set workload.kind=RayJob or remove it"
  $key (ternary (quote $val) (toJson $val) (kindIs "string" $val)) $v.workload.kind) -}}
{{- end -}}
{{- end -}}
{{- else -}}
{{- $name := include "meshray.clusterName" .ctx -}}
{{- if gt (len $name) 47 -}}
{{- $problems = append $problems (printf (print "clusterName: %q is %d characters; KubeRay (>= 1.4) names the RayJob's cluster <name>-<5 "
  "random> and refuses a RayJob name over 47 characters") $name (len $name)) -}}
{{- end -}}
{{- $mode := $j.submissionMode -}}
{{- if and (not $j.entrypoint) (ne $mode "InteractiveMode") -}}
{{- $problems = append $problems (printf "rayJob.entrypoint: empty, but submissionMode %s submits it; set the job's command (e.g. python /home/ray/job/job.py)"
  $mode) -}}
{{- end -}}
{{- if and $j.ttlSecondsAfterFinished (not $j.shutdownAfterJobFinishes) -}}
{{- $problems = append $problems (printf "rayJob.ttlSecondsAfterFinished: %d needs rayJob.shutdownAfterJobFinishes=true (KubeRay refuses it otherwise)"
  (int $j.ttlSecondsAfterFinished)) -}}
{{- end -}}
{{- if and $j.suspend (not $j.shutdownAfterJobFinishes) -}}
{{- $problems = append $problems "rayJob.suspend: true needs rayJob.shutdownAfterJobFinishes=true (KubeRay refuses it otherwise)" -}}
{{- end -}}
{{- if and (hasKey ($j.deletionStrategy | default dict) "deletionRules") $j.shutdownAfterJobFinishes -}}
{{- $problems = append $problems (print "rayJob.deletionStrategy.deletionRules: cannot be combined with "
  "rayJob.shutdownAfterJobFinishes=true (KubeRay refuses it); set shutdownAfterJobFinishes=false") -}}
{{- end -}}
{{- if and (eq $mode "InteractiveMode") $j.backoffLimit -}}
{{- $problems = append $problems (printf (print "rayJob.backoffLimit: %d with submissionMode InteractiveMode: KubeRay refuses retries of a "
  "job it does not submit; set it to 0") (int $j.backoffLimit)) -}}
{{- end -}}
{{- if and $j.submitterConfig (ne $mode "K8sJobMode") -}}
{{- $problems = append $problems (printf "rayJob.submitterConfig: applies to submissionMode K8sJobMode only (submissionMode is %s); remove it" $mode) -}}
{{- end -}}
{{- if and $j.submitterPodTemplate (ne $mode "K8sJobMode") -}}
{{- $problems = append $problems (printf "rayJob.submitterPodTemplate: applies to submissionMode K8sJobMode only (submissionMode is %s); remove it" $mode) -}}
{{- end -}}
{{- if and (eq $mode "SidecarMode") $v.podSecurity.enabled -}}
{{- $problems = append $problems (print "rayJob.submissionMode: SidecarMode makes the operator add its submitter container to the head Pod "
  "without a securityContext, which restricted Pod Security (podSecurity.enabled) refuses; use K8sJobMode (the chart's submitter runs "
  "restricted and in the mesh), or switch podSecurity off with its acknowledgement") -}}
{{- end -}}
{{- with $j.clusterSelector -}}
{{- if $j.suspend -}}
{{- $problems = append $problems "rayJob.suspend: true with rayJob.clusterSelector: KubeRay cannot suspend a job on a cluster it does not own; remove one" -}}
{{- end -}}
{{- if $j.backoffLimit -}}
{{- $problems = append $problems (printf (print "rayJob.backoffLimit: %d with rayJob.clusterSelector: KubeRay retries by creating a new "
  "cluster, which it does not do for an existing one; set it to 0") (int $j.backoffLimit)) -}}
{{- end -}}
{{- if eq $mode "SidecarMode" -}}
{{- $problems = append $problems (print "rayJob.submissionMode: SidecarMode with rayJob.clusterSelector: the submitter would have to be "
  "part of the existing cluster's head Pod; use K8sJobMode") -}}
{{- end -}}
{{- range $front := list "gateway" "gatewayAPI" -}}
{{- if (index $v $front).enabled -}}
{{- $problems = append $problems (printf (print "%s.enabled: true with rayJob.clusterSelector: the existing cluster's own release renders "
  "its ways in; set %s.enabled=false here") $front $front) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $route := list "dashboard" "client" -}}
{{- if (index $v.ingress $route).enabled -}}
{{- $problems = append $problems (printf (print "ingress.%s.enabled: true with workload.kind=RayJob: an Ingress backend names KubeRay's "
  "<cluster>-head-svc, and the operator gives the job's cluster a generated name; use gateway.* or gatewayAPI.*, whose Service the chart "
  "renders and selects by label") $route) -}}
{{- end -}}
{{- end -}}
{{- if and (eq $mode "K8sJobMode") (ne $v.mesh.dataplane "ambient") $v.mesh.injectSidecar (not $v.mesh.nativeSidecar) -}}
{{- $problems = append $problems (print "mesh.nativeSidecar: false with a RayJob in K8sJobMode: a classic istio-proxy container keeps "
  "running after the submitter exits, so its Job never completes (istio#11045); leave mesh.nativeSidecar=true (Kubernetes >= 1.29)") -}}
{{- end -}}
{{- with $j.submitterPodTemplate -}}
{{- $meta := get . "metadata" | default dict -}}
{{- range $part := list "labels" "annotations" -}}
{{- range $k, $val := get $meta $part | default dict -}}
{{- if or (regexMatch "^([a-z0-9.-]+\\.)?istio\\.io/" $k) (eq $k "meshray.io/submitter") (eq $k "meshray.io/cluster") -}}
{{- $problems = append $problems (printf (print "rayJob.submitterPodTemplate.metadata.%s.%s: %q: the chart sets the submitter's mesh "
  "enrolment, native sidecar and selector labels itself (an Istio key here could take it out of the mesh or keep its Job from completing); "
  "remove it") $part $k (toString $val)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $spec := get . "spec" | default dict -}}
{{- with get $spec "restartPolicy" -}}
{{- if not (has . (list "Never" "OnFailure")) -}}
{{- $problems = append $problems (printf "rayJob.submitterPodTemplate.spec.restartPolicy: %q; a Job's Pod takes Never or OnFailure" (toString .)) -}}
{{- end -}}
{{- end -}}
{{- with get $spec "serviceAccountName" -}}
{{- if eq (toString .) (include "meshray.serviceAccountName" $.ctx) -}}
{{- $problems = append $problems (printf (print "rayJob.submitterPodTemplate.spec.serviceAccountName: %q is the Ray pods' own "
  "ServiceAccount, which the AuthorizationPolicy admits to the GCS and raylets; the submitter needs the Jobs API only: leave it empty (the "
  "chart creates %s-submitter)") (toString .) (include "meshray.clusterName" $.ctx)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}
