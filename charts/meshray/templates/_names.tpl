{{/*
Names. Every object name the chart renders comes from a define in this file; templates never
build a name inline. All names derive from "meshray.clusterName" (the RayCluster's name), so
one value (clusterName, or the release's full name) names the whole cluster.
*/}}

{{/*
The chart's name, for app.kubernetes.io/name.
Usage: include "meshray.name" .
*/}}
{{- define "meshray.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The release's full name (Helm's usual fullname rule); the cluster name when clusterName is empty.
Usage: include "meshray.fullname" .
*/}}
{{- define "meshray.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The RayCluster's name: every other name derives from it.
Usage: include "meshray.clusterName" .
*/}}
{{- define "meshray.clusterName" -}}
{{- default (include "meshray.fullname" .) .Values.clusterName -}}
{{- end -}}

{{/*
"true" when the release runs a cluster of its own (a RayCluster, or a RayJob's cluster), empty
for a RayJob on an existing cluster (rayJob.clusterSelector): that cluster's own release then
renders its Services and policies, and this one only the RayJob and the submitter's identity.
Usage: if include "meshray.ownsCluster" .
*/}}
{{- define "meshray.ownsCluster" -}}
{{- if or (ne .Values.workload.kind "RayJob") (not .Values.rayJob.clusterSelector) -}}true{{- end -}}
{{- end -}}

{{/*
The headless Service that lists every Ray port, one by one (cluster/headless-service.yaml).
Usage: include "meshray.headlessServiceName" .
*/}}
{{- define "meshray.headlessServiceName" -}}
{{- printf "%s-headless-svc" (include "meshray.clusterName" .) -}}
{{- end -}}

{{/*
The Service KubeRay itself creates for the head from the head container's ports (not rendered
here; Ingress backends and certificate SANs point at it).
Usage: include "meshray.headServiceName" .
*/}}
{{- define "meshray.headServiceName" -}}
{{- printf "%s-head-svc" (include "meshray.clusterName" .) -}}
{{- end -}}

{{/*
The ServiceAccount of every Ray pod (serviceAccount.*): its identity is the principal the
cluster's AuthorizationPolicy admits to Ray's ports. serviceAccount.name, else `<cluster>-ray`
when the chart creates it, else the namespace's `default`.
Usage: include "meshray.serviceAccountName" .
*/}}
{{- define "meshray.serviceAccountName" -}}
{{- $sa := .Values.serviceAccount -}}
{{- $sa.name | default (ternary (printf "%s-ray" (include "meshray.clusterName" .)) "default" $sa.create) -}}
{{- end -}}

{{/*
The RayJob submitter's ServiceAccount (workload.kind=RayJob, K8sJobMode): its own identity, which
the AuthorizationPolicy admits to the dashboard port only; the submitter Pod template's
serviceAccountName when it sets one.
Usage: include "meshray.submitterServiceAccountName" .
*/}}
{{- define "meshray.submitterServiceAccountName" -}}
{{- $given := dig "spec" "serviceAccountName" "" (.Values.rayJob.submitterPodTemplate | default dict) -}}
{{- $given | default (printf "%s-submitter" (include "meshray.clusterName" .)) -}}
{{- end -}}

{{/*
The Ray pods' AuthorizationPolicy (mesh/authorizationpolicy.yaml) and NetworkPolicy
(mesh/networkpolicy.yaml).
Usage: include "meshray.rayPolicyName" .
*/}}
{{- define "meshray.rayPolicyName" -}}
{{- printf "%s-ray" (include "meshray.clusterName" .) -}}
{{- end -}}

{{/*
The cluster's PeerAuthentication: with mtls.scope=namespace it is the namespace-wide policy,
which Istio only honours under the name "default".
Usage: include "meshray.peerAuthenticationName" .
*/}}
{{- define "meshray.peerAuthenticationName" -}}
{{- ternary "default" (include "meshray.clusterName" .) (eq .Values.mtls.scope "namespace") -}}
{{- end -}}

{{/*
The Istio Sidecars of the Ray pods, one per role (mesh/sidecar.yaml).
Usage: include "meshray.sidecarName" (dict "ctx" $ "role" "head"|"worker")
*/}}
{{- define "meshray.sidecarName" -}}
{{- printf "%s-%s" (include "meshray.clusterName" .ctx) .role -}}
{{- end -}}

{{/*
The ClusterIP Service the Istio gateway routes to: the head pod only, real appProtocols
(gateway/service.yaml).
Usage: include "meshray.gatewayServiceName" .
*/}}
{{- define "meshray.gatewayServiceName" -}}
{{- printf "%s-gateway-svc" (include "meshray.clusterName" .) -}}
{{- end -}}

{{/*
The Istio Gateway the chart renders when gateway.existingGateway is empty (gateway/gateway.yaml).
Usage: include "meshray.gatewayName" .
*/}}
{{- define "meshray.gatewayName" -}}
{{- printf "%s-gateway" (include "meshray.clusterName" .) -}}
{{- end -}}

{{/*
The VirtualService of one gateway route (gateway/virtualservice.yaml).
Usage: include "meshray.virtualServiceName" (dict "ctx" $ "route" "dashboard"|"serve"|"client")
*/}}
{{- define "meshray.virtualServiceName" -}}
{{- printf "%s-%s" (include "meshray.clusterName" .ctx) .route -}}
{{- end -}}

{{/*
The AuthorizationPolicy admitting the dashboard and Ray Client only from the gateway.
Usage: include "meshray.gatewayOnlyPolicyName" .
*/}}
{{- define "meshray.gatewayOnlyPolicyName" -}}
{{- printf "%s-gateway-only" (include "meshray.clusterName" .) -}}
{{- end -}}

{{/*
The AuthorizationPolicy denying the guarded ports to requests without a JWT.
Usage: include "meshray.requireJwtPolicyName" .
*/}}
{{- define "meshray.requireJwtPolicyName" -}}
{{- printf "%s-require-jwt" (include "meshray.clusterName" .) -}}
{{- end -}}

{{/*
The RequestAuthentication validating the gateway's JWTs at the head's sidecar.
Usage: include "meshray.requestAuthenticationName" .
*/}}
{{- define "meshray.requestAuthenticationName" -}}
{{- printf "%s-jwt" (include "meshray.clusterName" .) -}}
{{- end -}}

{{/*
The Ray Client Ingress (ingress/client.yaml).
Usage: include "meshray.clientIngressName" .
*/}}
{{- define "meshray.clientIngressName" -}}
{{- printf "%s-client" (include "meshray.clusterName" .) -}}
{{- end -}}

{{/*
The dashboard Ingress (ingress/dashboard.yaml).
Usage: include "meshray.dashboardIngressName" .
*/}}
{{- define "meshray.dashboardIngressName" -}}
{{- printf "%s-dashboard" (include "meshray.clusterName" .) -}}
{{- end -}}

{{/*
The Gateway API route (HTTPRoute, GRPCRoute or TLSRoute) of one route (gatewayapi/routes.yaml).
Usage: include "meshray.gatewayRouteName" (dict "ctx" $ "route" "dashboard"|"serve"|"client")
*/}}
{{- define "meshray.gatewayRouteName" -}}
{{- printf "%s-%s" (include "meshray.clusterName" .ctx) .route -}}
{{- end -}}

{{/*
The ReferenceGrant letting routes in the Gateway's namespace reach the gateway Service
(gatewayapi/referencegrant.yaml).
Usage: include "meshray.gatewayReferenceGrantName" .
*/}}
{{- define "meshray.gatewayReferenceGrantName" -}}
{{- printf "%s-gateway-routes" (include "meshray.clusterName" .) -}}
{{- end -}}

{{/*
The ambient waypoint (mesh/waypoint.yaml): its Gateway, and the ServiceAccount and Service
istiod creates for it under the same name; also its AuthorizationPolicy (targetRefs).
Usage: include "meshray.waypointName" .
*/}}
{{- define "meshray.waypointName" -}}
{{- printf "%s-waypoint" (include "meshray.clusterName" .) -}}
{{- end -}}
