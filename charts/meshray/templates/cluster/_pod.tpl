{{/*
The RayCluster's groups: rayStartParams and the pod template shared by the head and every
worker group. Ports come from the model ($m, _model.tpl), never from the values directly.
*/}}

{{/*
The Ray image of every Ray container.
Usage: include "meshray.rayImage" .
*/}}
{{- define "meshray.rayImage" -}}
{{- printf "%s:%s" .Values.ray.image.repository (default .Values.ray.version .Values.ray.image.tag) -}}
{{- end -}}

{{/*
rayStartParams for one group: the group's extras (as strings, as the CRD requires), then what
the port map pins for the role (pinned ports, worker range, node-ip-address), which wins.
Usage: include "meshray.rayStartParams" (dict "model" $m "head" true|false "extra" $params)
*/}}
{{- define "meshray.rayStartParams" -}}
{{- $params := dict -}}
{{- range $k, $v := .extra -}}
{{- $_ := set $params $k (include "meshray.rayStartParamValue" (toString $v)) -}}
{{- end -}}
{{- range $k, $v := get .model.pinned (ternary "head" "worker" .head) -}}
{{- $_ := set $params $k $v -}}
{{- end -}}
{{- if and .head (not (hasKey $params "dashboard-host")) -}}
{{- $_ := set $params "dashboard-host" "0.0.0.0" -}}
{{- end -}}
{{ toYaml $params }}
{{- end -}}

{{/*
One extra rayStartParams value as bash must see it: KubeRay writes `--key=value` into a
`bash -lc` command line unquoted, so a value that is not plain (JSON for --resources, a path
with a space) is wrapped in single quotes, as KubeRay itself writes --resources; a plain value
or one already in single quotes stays as it is. The rayStartParams rule family refuses what
single quotes cannot carry (a single quote, a control character).
Usage: include "meshray.rayStartParamValue" $string
*/}}
{{- define "meshray.rayStartParamValue" -}}
{{- if or (regexMatch "^[-A-Za-z0-9_.,:/@%+=]*$" .) (regexMatch "^'[^']*'$" .) -}}
{{- . -}}
{{- else -}}
{{- printf "'%s'" . -}}
{{- end -}}
{{- end -}}

{{/*
The securityContexts of a group's pods and Ray containers, as JSON {pod, container}:
podSecurity.pod and podSecurity.container (restricted Pod Security Standard, as the
rayproject/ray image runs; unless podSecurity.enabled is false), with the group's podSecurityContext and securityContext merged
over them key by key (the group's keys win).
Usage: include "meshray.securityContexts" (dict "ctx" $ "group" $values) | fromJson
*/}}
{{- define "meshray.securityContexts" -}}
{{- $ps := .ctx.Values.podSecurity -}}
{{- $on := $ps.enabled -}}
{{- $pod := mergeOverwrite (deepCopy (and $on $ps.pod | default dict)) (deepCopy (.group.podSecurityContext | default dict)) -}}
{{- $container := mergeOverwrite (deepCopy (and $on $ps.container | default dict)) (deepCopy (.group.securityContext | default dict)) -}}
{{- toJson (dict "pod" $pod "container" $container) -}}
{{- end -}}

{{/*
Pod template shared by the head and every worker group.
Pod-spec fields pass through with toYaml so new Kubernetes fields work untouched.
Usage: include "meshray.podTemplate" (dict "ctx" $ "model" $m "group" $values "head" true|false)
*/}}
{{- define "meshray.podTemplate" -}}
{{- $ctx := .ctx -}}
{{- $m := .model -}}
{{- $g := .group -}}
{{- $containerName := ternary "ray-head" "ray-worker" .head -}}
{{- $image := include "meshray.rayImage" $ctx -}}
{{- $annotations := dict "meshray.io/port-map-checksum" $m.portMapChecksum -}}
{{- $ambient := eq $ctx.Values.mesh.dataplane "ambient" -}}
{{- if and $ctx.Values.mesh.nativeSidecar (not $ambient) -}}
{{- $_ := set $annotations "sidecar.istio.io/nativeSidecar" "true" -}}
{{- end -}}
{{- if and $ctx.Values.mesh.holdApplicationUntilProxyStarts (not $ambient) -}}
{{- $_ := set $annotations "proxy.istio.io/config" "{\"holdApplicationUntilProxyStarts\": true}" -}}
{{- end -}}
{{- $annotations = merge (deepCopy ($g.annotations | default dict)) $annotations -}}
{{- $labels := include "meshray.podTemplateLabels" (dict "ctx" $ctx "group" $g) | fromJson -}}
{{- $security := include "meshray.securityContexts" (dict "ctx" $ctx "group" $g) | fromJson -}}
metadata:
  {{- with $labels }}
  labels:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ $g.serviceAccountName | default (include "meshray.serviceAccountName" $ctx) | quote }}
  {{- /* KubeRay's autoscaler container on the head calls the Kubernetes API with the token */}}
  automountServiceAccountToken: {{ or $ctx.Values.serviceAccount.automountToken (and .head $ctx.Values.ray.autoscaling) }}
  {{- with $g.priorityClassName }}
  priorityClassName: {{ . | quote }}
  {{- end }}
  {{- with $ctx.Values.ray.imagePullSecrets }}
  imagePullSecrets:
    {{- range . }}
    - name: {{ . | quote }}
    {{- end }}
  {{- end }}
  {{- with $security.pod }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if $ctx.Values.rayTls.enabled }}
  initContainers:
    - name: ray-tls
      image: {{ $image | quote }}
      imagePullPolicy: {{ $ctx.Values.ray.image.pullPolicy | quote }}
      command: ["/bin/bash", "-c"]
      args:
        - |
          set -euo pipefail
          fqdn="{{ $m.podFqdn }}"
          san="IP:127.0.0.1,IP:${MESHRAY_POD_IP},DNS:localhost,DNS:${fqdn}"
          {{- if .head }}
          {{- $headSvc := include "meshray.headServiceName" $ctx }}
          san="${san},DNS:{{ $headSvc }},DNS:{{ $headSvc }}.{{ $ctx.Release.Namespace }}.svc.{{ $ctx.Values.clusterDomain }}"
          {{- with $ctx.Values.ingress.client.host }}
          san="${san},DNS:{{ . }}"
          {{- end }}
          {{- end }}
          openssl req -nodes -newkey rsa:2048 -subj "/CN=${MESHRAY_POD_IP}" \
            -keyout /etc/ray/tls/tls.key -out /etc/ray/tls/tls.csr
          printf 'subjectAltName=%s\n' "${san}" > /etc/ray/tls/san.cnf
          openssl x509 -req -days 365 -in /etc/ray/tls/tls.csr \
            -CA /etc/ca/tls/ca.crt -CAkey /etc/ca/tls/ca.key -CAcreateserial \
            -CAserial /etc/ray/tls/ca.srl -extfile /etc/ray/tls/san.cnf -out /etc/ray/tls/tls.crt
          # The Ray container gets the CA certificate only: ca.key stays in this container, so
          # code a job runs on Ray cannot sign certificates for other peers.
          cp /etc/ca/tls/ca.crt /etc/ray/tls/ca.crt
          rm -f /etc/ray/tls/tls.csr /etc/ray/tls/ca.srl
      env:
        - name: MESHRAY_POD_IP
          valueFrom:
            fieldRef:
              fieldPath: status.podIP
      volumeMounts:
        - name: ray-tls
          mountPath: /etc/ray/tls
        - name: ca-tls
          mountPath: /etc/ca/tls
          readOnly: true
      {{- with $g.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $security.container }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
  {{- end }}
  containers:
    - name: {{ $containerName }}
      image: {{ $image | quote }}
      imagePullPolicy: {{ $ctx.Values.ray.image.pullPolicy | quote }}
      {{- if .head }}
      # Only `metrics`: the head's other Ray ports are in the RayCluster's headService.
      ports:
        {{- range $m.containerPorts }}
        {{- if eq .containerPort "metrics" }}
        - name: {{ .containerPort }}
          containerPort: {{ .port }}
          protocol: TCP
        {{- end }}
        {{- end }}
      {{- end }}
      env:
        # The Pod FQDN given to Ray as node-ip-address is built from this address.
        - name: MESHRAY_POD_IP
          valueFrom:
            fieldRef:
              fieldPath: status.podIP
        {{- range get $m.env (ternary "head" "worker" .head) }}
        - name: {{ .name }}
          value: {{ .value | quote }}
        {{- end }}
        {{- if $ctx.Values.serve.enabled }}
        # Serve proxies must accept traffic from other pods, not only from localhost.
        - name: RAY_SERVE_DEFAULT_HTTP_HOST
          value: 0.0.0.0
        {{- end }}
        {{- if $ctx.Values.rayTls.enabled }}
        - name: RAY_USE_TLS
          value: "1"
        - name: RAY_TLS_SERVER_CERT
          value: /etc/ray/tls/tls.crt
        - name: RAY_TLS_SERVER_KEY
          value: /etc/ray/tls/tls.key
        - name: RAY_TLS_CA_CERT
          value: /etc/ray/tls/ca.crt
        {{- end }}
        {{- with $g.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $g.envFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $g.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $security.container }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if or $g.volumeMounts $ctx.Values.rayTls.enabled }}
      volumeMounts:
        {{- if $ctx.Values.rayTls.enabled }}
        # The pod's key and certificate and the CA certificate, from the ray-tls init container;
        # never the CA Secret, whose ca.key signs peer certificates.
        - name: ray-tls
          mountPath: /etc/ray/tls
          readOnly: true
        {{- end }}
        {{- with $g.volumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
    {{- /* user sidecars get the restricted defaults too, under their own securityContext */}}
    {{- range $g.sidecarContainers }}
    {{- $c := deepCopy . }}
    {{- if and $ctx.Values.podSecurity.enabled $ctx.Values.podSecurity.container }}
    {{- $_ := set $c "securityContext" (mergeOverwrite (deepCopy $ctx.Values.podSecurity.container) (deepCopy (get . "securityContext" | default dict))) }}
    {{- end }}
    - {{- toYaml $c | nindent 6 }}
    {{- end }}
  {{- if or $g.volumes $ctx.Values.rayTls.enabled }}
  volumes:
    {{- if $ctx.Values.rayTls.enabled }}
    - name: ray-tls
      emptyDir: {}
    - name: ca-tls
      secret:
        secretName: {{ $ctx.Values.rayTls.caSecretName | quote }}
    {{- end }}
    {{- with $g.volumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
  {{- with $g.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
