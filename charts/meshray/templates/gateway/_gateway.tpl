{{/*
Facts about the Istio ingress gateway shared by the objects in this folder.
*/}}

{{/*
The gateway's namespace: from existingGateway (namespace/name) or gateway.namespace.
Usage: include "meshray.gatewayNamespace" .
*/}}
{{- define "meshray.gatewayNamespace" -}}
{{- if .Values.gateway.existingGateway -}}
{{- first (splitList "/" .Values.gateway.existingGateway) -}}
{{- else -}}
{{- .Values.gateway.namespace -}}
{{- end -}}
{{- end -}}

{{/*
The Gateway the VirtualServices attach to, as namespace/name: existingGateway, or the one the
chart renders.
Usage: include "meshray.gatewayRef" .
*/}}
{{- define "meshray.gatewayRef" -}}
{{- .Values.gateway.existingGateway | default (printf "%s/%s" .Release.Namespace (include "meshray.gatewayName" .)) -}}
{{- end -}}
