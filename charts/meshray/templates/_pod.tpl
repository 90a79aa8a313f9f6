{{/*
Pod template shared by the head and every worker group.
Usage: include "meshray.podTemplate" (dict "ctx" $ "group" $values "head" true|false "groupName" "x")
Pod-spec fields pass through with toYaml so new Kubernetes fields work untouched.
*/}}
{{- define "meshray.podTemplate" -}}
{{- $ctx := .ctx -}}
{{- $g := .group -}}
{{- $containerName := ternary "ray-head" "ray-worker" .head -}}
{{- $annotations := dict -}}
{{- if $ctx.Values.mesh.holdApplicationUntilProxyStarts -}}
{{- $_ := set $annotations "proxy.istio.io/config" "{\"holdApplicationUntilProxyStarts\": true}" -}}
{{- end -}}
{{- $annotations = merge (deepCopy ($g.annotations | default dict)) $annotations -}}
{{- $labels := dict -}}
{{- if $ctx.Values.mesh.injectSidecar -}}
{{- $_ := set $labels "sidecar.istio.io/inject" "true" -}}
{{- end -}}
{{- $labels = merge (deepCopy ($g.labels | default dict)) $labels -}}
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
  {{- with $g.serviceAccountName }}
  serviceAccountName: {{ . }}
  {{- end }}
  {{- with $g.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with $ctx.Values.ray.imagePullSecrets }}
  imagePullSecrets:
    {{- range . }}
    - name: {{ . }}
    {{- end }}
  {{- end }}
  {{- with $g.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if $ctx.Values.rayTls.enabled }}
  initContainers:
    - name: ray-tls
      image: {{ include "meshray.rayImage" $ctx }}
      imagePullPolicy: {{ $ctx.Values.ray.image.pullPolicy }}
      command: ["/bin/bash", "-c"]
      args:
        - |
          set -euo pipefail
          fqdn="{{ include "meshray.podFqdn" $ctx }}"
          san="IP:127.0.0.1,IP:${MESHRAY_POD_IP},DNS:localhost,DNS:${fqdn}"
          {{- if .head }}
          san="${san},DNS:{{ include "meshray.headServiceName" $ctx }},DNS:{{ include "meshray.headServiceName" $ctx }}.{{ $ctx.Release.Namespace }}.svc.{{ $ctx.Values.clusterDomain }}"
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
  {{- end }}
  containers:
    - name: {{ $containerName }}
      image: {{ include "meshray.rayImage" $ctx }}
      imagePullPolicy: {{ $ctx.Values.ray.image.pullPolicy }}
      {{- if .head }}
      ports:
        {{- range (include "meshray.ports" $ctx | fromYaml).ports }}
        {{- if .containerPort }}
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
        {{- $isHead := .head }}
        {{- range (include "meshray.ports" $ctx | fromYaml).ports }}
        {{- if and .env (or $isHead (eq .scope "node")) }}
        - name: {{ .env }}
          value: {{ .port | int | toString | quote }}
        {{- end }}
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
          value: /etc/ca/tls/ca.crt
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
      {{- with $g.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if or $g.volumeMounts $ctx.Values.rayTls.enabled }}
      volumeMounts:
        {{- if $ctx.Values.rayTls.enabled }}
        - name: ray-tls
          mountPath: /etc/ray/tls
          readOnly: true
        - name: ca-tls
          mountPath: /etc/ca/tls
          readOnly: true
        {{- end }}
        {{- with $g.volumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
    {{- with $g.sidecarContainers }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- if or $g.volumes $ctx.Values.rayTls.enabled }}
  volumes:
    {{- if $ctx.Values.rayTls.enabled }}
    - name: ray-tls
      emptyDir: {}
    - name: ca-tls
      secret:
        secretName: {{ $ctx.Values.rayTls.caSecretName }}
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

{{/*
The worker groups after applying workerDefaults, as YAML {groups: [{name, values}]} sorted by name.
An empty workerGroups map gives one group named "workergroup".
*/}}
{{- define "meshray.workerGroups" -}}
{{- $groups := .Values.workerGroups | default (dict "workergroup" dict) -}}
{{- $out := list -}}
{{- range $name := keys $groups | sortAlpha -}}
{{- $g := deepCopy $.Values.workerDefaults -}}
{{- range $k, $v := (get $groups $name | default dict) -}}
{{- if and (has $k (list "rayStartParams" "nodeSelector" "annotations" "labels")) (kindIs "map" $v) (kindIs "map" (get $g $k)) -}}
{{- $_ := set $g $k (merge (deepCopy $v) (get $g $k)) -}}
{{- else -}}
{{- $_ := set $g $k $v -}}
{{- end -}}
{{- end -}}
{{- $out = append $out (dict "name" $name "values" $g) -}}
{{- end -}}
{{ toYaml (dict "groups" $out) }}
{{- end -}}
