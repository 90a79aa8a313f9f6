{{/*
Checks of mesh config that grows with pods x ports (issue 10, measured with the real istiod by
`make bench-mesh`: docs/mesh-cost.md). One rule family (see ../_validate.tpl): it returns its
problems as a JSON list of messages and never calls fail.
Usage: include "meshray.validate.meshCost" (dict "ctx" $ "model" $m) | fromJsonArray
*/}}

{{/* rayTls.maxListeners: with Ray-native TLS the worker ports are declared tls, and istiod
builds one listener per Ray pod IP and port of the headless Service in every Ray sidecar (and
every other sidecar the Service is exported to), growing with every scale-up. Without rayTls a
sidecar grows with ports only (ports.maxWorkerPorts caps that). The pods counted are the most
the cluster can have: the head plus every worker group's maxReplicas. Sidecar dataplane only:
with mesh.dataplane=ambient there are no Ray sidecars, so the measured cost does not apply. */}}
{{- define "meshray.validate.meshCost" -}}
{{- $v := .ctx.Values -}}
{{- $problems := list -}}
{{- if and $v.rayTls.enabled (eq $v.mesh.dataplane "sidecar") -}}
{{- $pods := 1 -}}
{{- range .model.groups -}}
{{- $pods = add $pods (int .values.maxReplicas) -}}
{{- end -}}
{{- $ports := len .model.workerPorts -}}
{{- $listeners := mul $pods $ports -}}
{{- $limit := int $v.rayTls.maxListeners -}}
{{- if gt (int $listeners) $limit -}}
{{- $problems = append $problems (printf (print "rayTls.maxListeners: with rayTls.enabled istiod builds a listener per Ray pod and worker "
  "port in every Ray sidecar: up to %d pods (head + maxReplicas) x %d worker ports is %d listeners, above rayTls.maxListeners=%d "
  "(measured: docs/mesh-cost.md); narrow the worker range, lower maxReplicas, end TLS at a gateway (gatewayAPI.routes.client.mode grpc), "
  "or raise rayTls.maxListeners deliberately") (int $pods) (int $ports) (int $listeners) $limit) -}}
{{- end -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}
