{{/*
Checks of the Istio ingress gateway: routes, servers, TLS modes and authentication.
Each define is one rule family of the chart's validation (see ../_validate.tpl): it returns
its problems as a JSON list of messages and never calls fail.
Usage: include "meshray.validate.<family>" (dict "ctx" $ "model" $m) | fromJsonArray
*/}}

{{/* Istio ingress gateway: routes, servers, TLS modes and authentication. */}}
{{- define "meshray.validate.gateway" -}}
{{- $v := .ctx.Values -}}
{{- $gw := $v.gateway -}}
{{- $problems := list -}}
{{- if $gw.enabled -}}
{{- $r := $gw.routes -}}
{{- if not (or $r.dashboard.enabled $r.serve.enabled $r.client.enabled) -}}
{{- $problems = append $problems "gateway.routes: gateway.enabled=true but no route is enabled; enable gateway.routes.dashboard, .serve or .client" -}}
{{- end -}}
{{- range $route := list "dashboard" "serve" "client" -}}
{{- $rv := get $r $route -}}
{{- if and $rv.enabled (not $rv.host) -}}
{{- $problems = append $problems (printf "gateway.routes.%s.host: \"\": a gateway route needs a host name" $route) -}}
{{- end -}}
{{- end -}}
{{- if and $r.serve.enabled (not $v.serve.enabled) -}}
{{- $problems = append $problems "gateway.routes.serve.enabled: true needs serve.enabled=true, which declares and pins the Serve proxy ports" -}}
{{- end -}}
{{- $passthrough := and $r.client.enabled (eq $r.client.mode "passthrough") -}}
{{- if and $passthrough (not $v.rayTls.enabled) -}}
{{- $problems = append $problems (print "gateway.routes.client.mode: \"passthrough\" needs rayTls.enabled=true: the gateway passes the TLS "
  "stream through to Ray's client server") -}}
{{- end -}}
{{- if and $r.client.enabled (eq $r.client.mode "grpc") $v.rayTls.enabled -}}
{{- $problems = append $problems (print "gateway.routes.client.mode: \"grpc\" cannot work with rayTls.enabled=true: the gateway would send "
  "plaintext gRPC to a TLS server; use mode passthrough") -}}
{{- end -}}
{{- if and $passthrough $gw.https.disableSniMatching -}}
{{- $problems = append $problems "gateway.https.disableSniMatching: true cannot be combined with gateway.routes.client.mode=passthrough, which routes by SNI"
  -}}
{{- end -}}
{{- $needsHttps := or $passthrough (and (or $r.dashboard.enabled $r.serve.enabled (and $r.client.enabled (eq $r.client.mode "grpc")))
  (not $gw.http.enabled)) -}}
{{- if and (not $gw.existingGateway) $needsHttps (not $gw.https.enabled) -}}
{{- $problems = append $problems (print "gateway.https.enabled: false, but the enabled routes need the HTTPS server (Ray Client "
  "passthrough, or gateway.http.enabled=false)") -}}
{{- end -}}
{{- if and (not $gw.existingGateway) $gw.https.enabled (not $gw.https.credentialName) (or $r.dashboard.enabled $r.serve.enabled (and $r.client.enabled
  (eq $r.client.mode "grpc"))) -}}
{{- $problems = append $problems "gateway.https.credentialName: \"\": the HTTPS server terminates TLS and needs a TLS Secret in the gateway's namespace" -}}
{{- end -}}
{{- if and $gw.http.httpsRedirect (not $gw.https.enabled) (not $gw.existingGateway) -}}
{{- $problems = append $problems "gateway.http.httpsRedirect: true needs gateway.https.enabled=true" -}}
{{- end -}}
{{- $guarded := or $r.dashboard.enabled (and $r.client.enabled (eq $r.client.mode "grpc")) -}}
{{- if and $guarded (not $gw.auth.jwtIssuer) (not $v.rayAuth.enabled) (not $gw.acknowledgeUnauthenticated) -}}
{{- $problems = append $problems (print "gateway.auth.jwtIssuer: \"\": the dashboard, Jobs API and Ray Client execute arbitrary code for "
  "whoever reaches them (CVE-2023-48022). Set gateway.auth.jwtIssuer and jwksUri, or rayAuth.enabled=true, or "
  "gateway.acknowledgeUnauthenticated=true if something else guards them") -}}
{{- end -}}
{{- $hosts := dict -}}
{{- range $route := list "dashboard" "serve" "client" -}}
{{- $rv := get $r $route -}}
{{- if and $rv.enabled $rv.host -}}
{{- if hasKey $hosts $rv.host -}}
{{- $problems = append $problems (printf (print "gateway.routes.%s.host: %q is also the host of gateway.routes.%s; each route needs a host "
  "of its own (one VirtualService per host)") $route $rv.host (get $hosts $rv.host)) -}}
{{- else -}}
{{- $_ := set $hosts $rv.host $route -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (not $gw.existingGateway) $gw.http.enabled $gw.https.enabled (eq (int $gw.http.port) (int $gw.https.port)) -}}
{{- $problems = append $problems (printf "gateway.https.port: %d is also gateway.http.port; a Gateway cannot serve HTTP and HTTPS on one port"
  (int $gw.https.port)) -}}
{{- end -}}
{{- if and $gw.auth.jwtIssuer (not $gw.auth.jwksUri) -}}
{{- $problems = append $problems (printf "gateway.auth.jwksUri: \"\": gateway.auth.jwtIssuer=%q needs the issuer's JWKS URI" $gw.auth.jwtIssuer) -}}
{{- end -}}
{{- /* The JWT-guarded routes (the DENY policy's ports) on the rendered Gateway's plain-HTTP
server: bearer tokens would cross the network in clear. An existingGateway's servers are not
the chart's to know. */ -}}
{{- $jwtRoutes := list -}}
{{- if $r.dashboard.enabled }}{{ $jwtRoutes = append $jwtRoutes "dashboard" }}{{ end -}}
{{- if and $r.client.enabled (eq $r.client.mode "grpc") }}{{ $jwtRoutes = append $jwtRoutes "client" }}{{ end -}}
{{- if and $gw.auth.jwtIssuer $jwtRoutes (not $gw.existingGateway) $gw.http.enabled (not (and $gw.https.enabled $gw.http.httpsRedirect)) -}}
{{- $problems = append $problems (printf (print "gateway.http.enabled: true serves the JWT-protected %s %s (gateway.auth.jwtIssuer=%q) on "
  "the plain-HTTP server (gateway.http.httpsRedirect=%t), so their bearer tokens would cross the network in clear; set "
  "gateway.https.enabled=true with gateway.http.httpsRedirect=true, or gateway.http.enabled=false")
  (join " and " $jwtRoutes) (ternary "routes" "route" (gt (len $jwtRoutes) 1)) $gw.auth.jwtIssuer $gw.http.httpsRedirect) -}}
{{- end -}}
{{- $auth := $gw.auth -}}
{{- if and $auth.jwtIssuer (not $auth.audiences) (not $auth.acknowledgeAnyAudience) -}}
{{- $problems = append $problems (printf (print "gateway.auth.audiences: []: gateway.auth.jwtIssuer=%q with no audiences accepts every "
  "token that issuer ever signed, for any service; list the aud claim(s) of the tokens meant for this Ray cluster in "
  "gateway.auth.audiences, or set gateway.auth.acknowledgeAnyAudience=true") $auth.jwtIssuer) -}}
{{- end -}}
{{- /* In-mesh callers spared the JWT (meshray.jwtExemptPrincipals) must not include the gateway. */ -}}
{{- if $auth.jwtIssuer -}}
{{- range include "meshray.jwtSparedGateway" .ctx | fromJsonArray -}}
{{- $problems = append $problems (printf (print "%s: %q matches the gateway's own principal %q, so requests the gateway forwards would pass "
  "the require-JWT policy without a token; list the in-mesh callers by their exact identity (the gateway is admitted on its own)") .key .principal .front) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if not $gw.enabled -}}
{{- $set := dict "gateway.existingGateway" $gw.existingGateway "gateway.https.enabled" $gw.https.enabled
  "gateway.auth.jwtIssuer" $gw.auth.jwtIssuer "gateway.authorizationPolicy.enabled" $gw.authorizationPolicy.enabled -}}
{{- range $route := list "dashboard" "serve" "client" -}}
{{- $_ := set $set (printf "gateway.routes.%s.enabled" $route) (get $gw.routes $route).enabled -}}
{{- end -}}
{{- $problems = concat $problems (include "meshray.offSettings" (dict "switch" "gateway.enabled" "set" $set) | fromJsonArray) -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}
