{{/*
The RayCluster spec every workload kind runs (workload.kind): the RayCluster's own `spec`, and a
RayJob's `spec.rayClusterSpec`. One port map, one pod template helper for every kind: they
differ only in who names the cluster (the chart, or the operator with a generated suffix) and in
upgradeStrategy, which only a long-lived RayCluster has.
Usage: include "meshray.rayClusterSpec" (dict "ctx" $ "model" $m) | nindent N
*/}}
{{- define "meshray.rayClusterSpec" -}}
{{- $ctx := .ctx -}}
{{- $v := $ctx.Values -}}
{{- $m := .model -}}
rayVersion: {{ $v.ray.version | quote }}
{{- if eq $v.workload.kind "RayCluster" }}
{{- with $v.kuberay.upgradeStrategy }}
# Running pods keep the ray start flags they were created with; Recreate (KubeRay >= 1.6.0)
# replaces them whenever the spec changes, so they never run an old port map.
upgradeStrategy:
  type: {{ . }}
{{- end }}
{{- end }}
{{- if $v.ray.autoscaling }}
enableInTreeAutoscaling: true
{{- with and $v.podSecurity.enabled $v.podSecurity.container }}
# KubeRay adds the autoscaler container to the head pod: the same restricted settings.
autoscalerOptions:
  securityContext:
    {{- toYaml . | nindent 4 }}
{{- end }}
{{- end }}
# KubeRay's own <cluster>-head-svc gets the same mesh footprint as the headless Service.
headServiceAnnotations:
  networking.istio.io/exportTo: {{ join "," $v.service.exportTo | quote }}
{{- if $v.rayAuth.enabled }}
authOptions:
  mode: token
  {{- with $v.rayAuth.secretName }}
  secretName: {{ . | quote }}
  {{- end }}
{{- end }}
headGroupSpec:
  # KubeRay builds <cluster>-head-svc from this template, then appends the head container's
  # ports, every one appProtocol tcp (kuberay#1946). So the head's Ray ports are declared
  # here, each with its protocol (L7 in the mesh), and the head container lists only
  # `metrics`, the one port KubeRay always appends (a port declared twice is refused).
  headService:
    {{- $svcLabels := include "meshray.ambientServiceLabels" $ctx | fromJson }}
    {{- $job := ne $v.workload.kind "RayCluster" }}
    {{- if or $svcLabels $job }}
    metadata:
      {{- with $svcLabels }}
      labels:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if $job }}
      # KubeRay (>= 1.5) copies the job's head Service as <rayjob>-head-svc with this template's
      # annotations but not headServiceAnnotations (measured: docs/mesh-e2e.md).
      annotations:
        networking.istio.io/exportTo: {{ join "," $v.service.exportTo | quote }}
      {{- end }}
    {{- end }}
    spec:
      ports:
        {{- range $m.containerPorts }}
        {{- if ne .containerPort "metrics" }}
        - name: {{ .containerPort }}
          port: {{ .port }}
          targetPort: {{ .port }}
          protocol: TCP
          appProtocol: {{ .protocol }}
        {{- end }}
        {{- end }}
  rayStartParams:
    {{- include "meshray.rayStartParams" (dict "model" $m "head" true "extra" $v.head.rayStartParams) | nindent 4 }}
  template:
    {{- include "meshray.podTemplate" (dict "ctx" $ctx "model" $m "group" $v.head "head" true) | nindent 4 }}
workerGroupSpecs:
  {{- range $m.groups }}
  {{- $g := .values }}
  - groupName: {{ .name | quote }}
    replicas: {{ $g.replicas }}
    minReplicas: {{ $g.minReplicas }}
    maxReplicas: {{ $g.maxReplicas }}
    {{- if $job }}
    # The defaults the operator's RayJob update writes (it adds its finalizer by rewriting the
    # whole object and then owns these fields): declared here, helm's server-side apply agrees
    # with it on `helm upgrade` instead of conflicting (measured: docs/cluster-e2e.md).
    numOfHosts: 1
    scaleStrategy: {}
    {{- end }}
    rayStartParams:
      {{- include "meshray.rayStartParams" (dict "model" $m "head" false "extra" $g.rayStartParams) | nindent 6 }}
    template:
      {{- include "meshray.podTemplate" (dict "ctx" $ctx "model" $m "group" $g "head" false) | nindent 6 }}
  {{- end }}
{{- end -}}
