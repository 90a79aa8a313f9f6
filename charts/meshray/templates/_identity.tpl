{{/*
Identities: the Istio principals (SPIFFE IDs) the chart's policies admit, built in one place
for every component: the Ray pods' AuthorizationPolicy (mesh/), the gateway's policies
(gateway/, via _front.tpl) and the checks that compare identities (cluster/, gateway/,
gatewayapi/).
*/}}

{{/*
The mesh's trust domain: gateway.trustDomain when set (older values), else mesh.trustDomain.
Usage: include "meshray.trustDomain" .
*/}}
{{- define "meshray.trustDomain" -}}
{{- .Values.gateway.trustDomain | default .Values.mesh.trustDomain -}}
{{- end -}}

{{/*
An Istio principal (AuthorizationPolicy `principals`): <trustDomain>/ns/<namespace>/sa/<sa>.
Usage: include "meshray.principal" (dict "ctx" $ "namespace" $ns "serviceAccount" $sa)
*/}}
{{- define "meshray.principal" -}}
{{- printf "%s/ns/%s/sa/%s" (include "meshray.trustDomain" .ctx) .namespace .serviceAccount -}}
{{- end -}}

{{/*
The KubeRay operator's principal (kuberay.operator): a RayJob's cluster is polled by the
operator on the Jobs API (GET /api/jobs/<id>; HTTPMode also submits there).
Usage: include "meshray.operatorPrincipal" .
*/}}
{{- define "meshray.operatorPrincipal" -}}
{{- include "meshray.principal" (dict "ctx" . "namespace" .Values.kuberay.operator.namespace "serviceAccount" .Values.kuberay.operator.serviceAccount) -}}
{{- end -}}

{{/*
The RayJob submitter's principal (K8sJobMode): its own ServiceAccount in the release namespace.
Usage: include "meshray.submitterPrincipal" .
*/}}
{{- define "meshray.submitterPrincipal" -}}
{{- include "meshray.principal" (dict "ctx" . "namespace" .Release.Namespace "serviceAccount" (include "meshray.submitterServiceAccountName" .)) -}}
{{- end -}}

{{/*
The Istio ingress gateway's principal.
Usage: include "meshray.gatewayPrincipal" .
*/}}
{{- define "meshray.gatewayPrincipal" -}}
{{- include "meshray.principal" (dict "ctx" . "namespace" (include "meshray.gatewayNamespace" .) "serviceAccount" .Values.gateway.serviceAccount) -}}
{{- end -}}
