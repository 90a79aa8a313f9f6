{{/*
Checks of the Ingresses: what the Ray Client and dashboard Ingresses need to work and be safe.
Each define is one rule family of the chart's validation (see ../_validate.tpl): it returns
its problems as a JSON list of messages and never calls fail.
Usage: include "meshray.validate.<family>" (dict "ctx" $ "model" $m) | fromJsonArray
*/}}

{{/* Ingresses: what the Ray Client and dashboard Ingresses need to work and be safe. */}}
{{- define "meshray.validate.ingress" -}}
{{- $v := .ctx.Values -}}
{{- $problems := list -}}
{{- $ic := $v.ingress.client -}}
{{- if $ic.enabled -}}
{{- if not $v.rayTls.enabled -}}
{{- $problems = append $problems (print "ingress.client.enabled: true needs rayTls.enabled=true: with ssl-passthrough NGINX hands the "
  "client's TLS stream to Ray's client server, which must speak TLS") -}}
{{- end -}}
{{- if not $ic.host -}}
{{- $problems = append $problems "ingress.client.host: \"\": ssl-passthrough routes by SNI, so the client Ingress needs a host name" -}}
{{- end -}}
{{- if ne $ic.className "nginx" -}}
{{- $problems = append $problems (printf (print "ingress.client.className: %q: the Ray Client Ingress relies on ingress-nginx's "
  "ssl-passthrough annotation, which other controllers ignore; use className nginx or the Istio gateway (gateway.routes.client)") $ic.className) -}}
{{- end -}}
{{- end -}}
{{- $id := $v.ingress.dashboard -}}
{{- if and $ic.enabled $id.enabled $ic.host (eq $ic.host $id.host) -}}
{{- $problems = append $problems (printf (print "ingress.client.host: %q is also ingress.dashboard.host; ssl-passthrough takes every TLS "
  "connection for the host, so the dashboard would never be reached: use two hosts") $ic.host) -}}
{{- end -}}
{{- if $id.enabled -}}
{{- $t := $id.auth.type -}}
{{- if and (ne $t "none") (ne $id.className "nginx") -}}
{{- $problems = append $problems (printf (print "ingress.dashboard.auth.type: %q is applied through ingress-nginx annotations, which "
  "className %q ignores, so the dashboard would be public; use className nginx, or guard it another way and set auth.type none") $t $id.className) -}}
{{- end -}}
{{- if ne $id.className "nginx" -}}
{{- range $k, $_ := ($id.annotations | default dict) -}}
{{- if hasPrefix "nginx.ingress.kubernetes.io/auth-" $k -}}
{{- $problems = append $problems (printf (print "ingress.dashboard.annotations: %s is read only by ingress-nginx, and className %q ignores "
  "it: the dashboard would be public") $k $id.className) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (eq $t "none") (not $v.rayAuth.enabled) (not $id.acknowledgeUnauthenticated) -}}
{{- $problems = append $problems (print "ingress.dashboard.auth.type: \"none\": the dashboard and Jobs API execute arbitrary code for "
  "whoever reaches them (CVE-2023-48022). Set ingress.dashboard.auth.type to basic or external, or rayAuth.enabled=true (Ray token auth), "
  "or ingress.dashboard.acknowledgeUnauthenticated=true if something else guards it") -}}
{{- end -}}
{{- if and (eq $t "basic") (not $id.auth.basicSecretName) -}}
{{- $problems = append $problems (print "ingress.dashboard.auth.basicSecretName: \"\": auth.type=basic needs the name of a Secret holding "
  "an htpasswd file under the key auth") -}}
{{- end -}}
{{- if and (eq $t "external") (not $id.auth.externalUrl) -}}
{{- $problems = append $problems (print "ingress.dashboard.auth.externalUrl: \"\": auth.type=external needs the URL of the authentication "
  "service (for example oauth2-proxy's /oauth2/auth)") -}}
{{- end -}}
{{- if and $id.tls.enabled (not $id.tls.secretName) -}}
{{- $problems = append $problems "ingress.dashboard.tls.secretName: \"\": tls.enabled=true needs the name of a TLS Secret" -}}
{{- end -}}
{{- end -}}
{{- if not $id.enabled -}}
{{- $authType := ternary "" $id.auth.type (eq $id.auth.type "none") -}}
{{- $set := dict "ingress.dashboard.tls.enabled" $id.tls.enabled "ingress.dashboard.auth.type" $authType -}}
{{- $problems = concat $problems (include "meshray.offSettings" (dict "switch" "ingress.dashboard.enabled" "set" $set) | fromJsonArray) -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}
