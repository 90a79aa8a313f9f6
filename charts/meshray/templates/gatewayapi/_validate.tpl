{{/*
Checks of the Gateway API routes (gatewayAPI.*): routes, listeners, TLS modes and
authentication. One rule family of the chart's validation (see ../_validate.tpl): it returns
its problems as a JSON list of messages and never calls fail.
Usage: include "meshray.validate.gatewayAPI" (dict "ctx" $ "model" $m) | fromJsonArray
*/}}

{{/* Gateway API routes: routes, listeners, TLS modes and authentication. */}}
{{- define "meshray.validate.gatewayAPI" -}}
{{- $v := .ctx.Values -}}
{{- $ga := $v.gatewayAPI -}}
{{- $problems := list -}}
{{- if $ga.enabled -}}
{{- $r := $ga.routes -}}
{{- if $v.gateway.enabled -}}
{{- $problems = append $problems (print "gatewayAPI.enabled: true cannot be combined with gateway.enabled=true: both would route to "
  "<cluster>-gateway-svc and share its policies; to migrate from the Istio Gateway + VirtualServices, set gateway.enabled=false and move "
  "its routes under gatewayAPI.routes") -}}
{{- end -}}
{{- if not (or $r.dashboard.enabled $r.serve.enabled $r.client.enabled) -}}
{{- $problems = append $problems "gatewayAPI.routes: gatewayAPI.enabled=true but no route is enabled; enable gatewayAPI.routes.dashboard, .serve or .client" -}}
{{- end -}}
{{- range $route := list "dashboard" "serve" "client" -}}
{{- $rv := get $r $route -}}
{{- if and $rv.enabled (not $rv.host) -}}
{{- $problems = append $problems (printf "gatewayAPI.routes.%s.host: \"\": a Gateway API route needs a host name (its hostnames, and its listener's hostname)"
  $route) -}}
{{- end -}}
{{- end -}}
{{- if and $r.serve.enabled (not $v.serve.enabled) -}}
{{- $problems = append $problems "gatewayAPI.routes.serve.enabled: true needs serve.enabled=true, which declares and pins the Serve proxy ports" -}}
{{- end -}}
{{- $passthrough := and $r.client.enabled (eq $r.client.mode "passthrough") -}}
{{- if and $passthrough (not $v.rayTls.enabled) -}}
{{- $problems = append $problems (print "gatewayAPI.routes.client.mode: \"passthrough\" needs rayTls.enabled=true: the TLSRoute passes the "
  "client's TLS stream through to Ray's client server, which must speak TLS") -}}
{{- end -}}
{{- $grpc := and $r.client.enabled (eq $r.client.mode "grpc") -}}
{{- if and $grpc $v.rayTls.enabled -}}
{{- $problems = append $problems (print "gatewayAPI.routes.client.mode: \"grpc\" cannot work with rayTls.enabled=true: the gateway would "
  "send plaintext gRPC to a TLS server; use mode passthrough (TLSRoute)") -}}
{{- end -}}
{{- if and (not $ga.existingGateway) (or $r.dashboard.enabled $r.serve.enabled $grpc) (not $ga.https.certificateSecret) -}}
{{- $problems = append $problems (print "gatewayAPI.https.certificateSecret: \"\": the rendered Gateway's HTTPS listeners terminate TLS and "
  "need a TLS Secret in the release namespace (or attach to gatewayAPI.existingGateway)") -}}
{{- end -}}
{{- if and (or $r.dashboard.enabled $grpc) (not $ga.auth.jwtIssuer) (not $v.rayAuth.enabled) (not $ga.acknowledgeUnauthenticated) -}}
{{- $problems = append $problems (print "gatewayAPI.auth.jwtIssuer: \"\": the dashboard, Jobs API and Ray Client execute arbitrary code for "
  "whoever reaches them (CVE-2023-48022). Set gatewayAPI.auth.jwtIssuer and jwksUri, or rayAuth.enabled=true, or "
  "gatewayAPI.acknowledgeUnauthenticated=true if something else guards them") -}}
{{- end -}}
{{- if and $ga.auth.jwtIssuer (not $ga.auth.jwksUri) -}}
{{- $problems = append $problems (printf "gatewayAPI.auth.jwksUri: \"\": gatewayAPI.auth.jwtIssuer=%q needs the issuer's JWKS URI" $ga.auth.jwtIssuer) -}}
{{- end -}}
{{- /* The dashboard HTTPRoute, JWT-guarded, would also attach to the plain-HTTP listener
(http-dashboard): bearer tokens would cross the network in clear. */ -}}
{{- if and $ga.auth.jwtIssuer $r.dashboard.enabled (not $ga.existingGateway) $ga.http.enabled -}}
{{- $problems = append $problems (printf (print "gatewayAPI.http.enabled: true puts the JWT-protected dashboard route "
  "(gatewayAPI.auth.jwtIssuer=%q) on the plain-HTTP listener http-dashboard, so its bearer tokens would cross the network in clear; set "
  "gatewayAPI.http.enabled=false (the HTTPS listeners serve every route)") $ga.auth.jwtIssuer) -}}
{{- end -}}
{{- $auth := $ga.auth -}}
{{- if and $auth.jwtIssuer (not $auth.audiences) (not $auth.acknowledgeAnyAudience) -}}
{{- $problems = append $problems (printf (print "gatewayAPI.auth.audiences: []: gatewayAPI.auth.jwtIssuer=%q with no audiences accepts "
  "every token that issuer ever signed, for any service; list the aud claim(s) of the tokens meant for this Ray cluster in "
  "gatewayAPI.auth.audiences, or set gatewayAPI.auth.acknowledgeAnyAudience=true") $auth.jwtIssuer) -}}
{{- end -}}
{{- /* In-mesh callers spared the JWT (meshray.jwtExemptPrincipals) must not include the gateway. */ -}}
{{- if $auth.jwtIssuer -}}
{{- range include "meshray.jwtSparedGateway" .ctx | fromJsonArray -}}
{{- $problems = append $problems (printf (print "%s: %q matches the gateway's own principal %q, so requests the gateway forwards would pass "
  "the require-JWT policy without a token; list the in-mesh callers by their exact identity (the gateway is admitted on its own)") .key .principal .front) -}}
{{- end -}}
{{- end -}}
{{- $hosts := dict -}}
{{- range $route := list "dashboard" "serve" "client" -}}
{{- $rv := get $r $route -}}
{{- if and $rv.enabled $rv.host -}}
{{- if hasKey $hosts $rv.host -}}
{{- $problems = append $problems (printf (print "gatewayAPI.routes.%s.host: %q is also the host of gatewayAPI.routes.%s; each route needs a "
  "host of its own (one listener per host and port)") $route $rv.host (get $hosts $rv.host)) -}}
{{- else -}}
{{- $_ := set $hosts $rv.host $route -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (not $ga.existingGateway) $ga.http.enabled (eq (int $ga.http.port) (int $ga.https.port)) -}}
{{- $problems = append $problems (printf "gatewayAPI.http.port: %d is also gatewayAPI.https.port; a Gateway cannot serve HTTP and HTTPS on one port"
  (int $ga.http.port)) -}}
{{- end -}}
{{- if $ga.routesInGatewayNamespace -}}
{{- $gwNs := first (splitList "/" ($ga.existingGateway | default "/")) -}}
{{- if or (not $gwNs) (eq $gwNs .ctx.Release.Namespace) -}}
{{- $problems = append $problems (printf (print "gatewayAPI.routesInGatewayNamespace: true needs gatewayAPI.existingGateway in another "
  "namespace than the release's (it is %q): the routes move to the Gateway's namespace, with a ReferenceGrant back to this one") $ga.existingGateway) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if not $ga.enabled -}}
{{- $set := dict "gatewayAPI.existingGateway" $ga.existingGateway "gatewayAPI.http.enabled" $ga.http.enabled
  "gatewayAPI.https.certificateSecret" $ga.https.certificateSecret "gatewayAPI.auth.jwtIssuer" $ga.auth.jwtIssuer
  "gatewayAPI.authorizationPolicy.enabled" $ga.authorizationPolicy.enabled
  "gatewayAPI.routesInGatewayNamespace" $ga.routesInGatewayNamespace -}}
{{- range $route := list "dashboard" "serve" "client" -}}
{{- $_ := set $set (printf "gatewayAPI.routes.%s.enabled" $route) (get $ga.routes $route).enabled -}}
{{- end -}}
{{- $problems = concat $problems (include "meshray.offSettings" (dict "switch" "gatewayAPI.enabled" "set" $set) | fromJsonArray) -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}
