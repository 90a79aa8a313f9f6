{{/*
Checks of what users hand the Ray pods: ports Istio owns, the Ray image, and the pod-spec
passthrough (env, volumes) where a mistake would break the one-port-map promise or only fail
later on the API server. Each define is one rule family of the chart's validation (see
../_validate.tpl): it returns its problems as a JSON list of messages and never calls fail.
Usage: include "meshray.validate.<family>" (dict "ctx" $ "model" $m) | fromJsonArray
*/}}

{{/* Ports Istio's sidecar owns (15000-15090: admin, outbound, inbound, agent, health, DNS,
Prometheus): a Ray port there collides with istio-proxy in the same pod network namespace. And
with serve off, Ray Serve's default proxy ports (8000, 9000), which a driver can still start. */}}
{{- define "meshray.validate.istioPorts" -}}
{{- $w := .model.workerRange -}}
{{- $workers := .model.workerPorts -}}
{{- $problems := list -}}
{{- $reserved := "Istio's sidecar owns ports 15000-15090 in every meshed pod; pick a port outside that range" -}}
{{- range .model.ports -}}
{{- if and (ge (int .port) 15000) (le (int .port) 15090) -}}
{{- $problems = append $problems (printf "%s: port %d: %s" .key (int .port) $reserved) -}}
{{- end -}}
{{- end -}}
{{- if not $w -}}
{{- range $workers -}}
{{- if and (ge (int .) 15000) (le (int .) 15090) -}}
{{- $problems = append $problems (printf "ports.workerPortList: port %d: %s" (int .) $reserved) -}}
{{- end -}}
{{- end -}}
{{- else if and (le $w.min 15090) (ge $w.max 15000) -}}
{{- $problems = append $problems (printf "ports.maxWorkerPort: the worker range %d-%d includes port 15000 and up: %s" $w.min $w.max $reserved) -}}
{{- end -}}
{{- if not .ctx.Values.serve.enabled -}}
{{- $serve := dict "8000" "HTTP" "9000" "gRPC" -}}
{{- $why := (print "Ray Serve's default %s proxy port: a driver that starts Serve (serve.run) binds it on every node even with "
  "serve.enabled=false; pick another port, or set serve.enabled=true to pin Serve's ports elsewhere (serve.httpPort, serve.grpcPort)") -}}
{{- range .model.ports -}}
{{- if hasKey $serve (toString (int .port)) -}}
{{- $problems = append $problems (printf "%s: port %d is %s" .key (int .port) (printf $why (get $serve (toString (int .port))))) -}}
{{- end -}}
{{- end -}}
{{- range $n, $kind := $serve -}}
{{- $in := false -}}
{{- if not $w -}}
{{- range $workers -}}{{- if eq (int .) (int $n) -}}{{- $in = true -}}{{- end -}}{{- end -}}
{{- else -}}
{{- $in = and (le $w.min (int $n)) (ge $w.max (int $n)) -}}
{{- end -}}
{{- if $in -}}
{{- $problems = append $problems (printf "%s: the worker ports include %s, %s" $.model.workerPortsKey $n (printf $why $kind)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}

{{/* The Ray image and version: the port map is chosen per Ray version, so the image must run
that version. */}}
{{- define "meshray.validate.rayImage" -}}
{{- $r := .ctx.Values.ray -}}
{{- $problems := list -}}
{{- if semverCompare "<2.10.0-0" $r.version -}}
{{- $problems = append $problems (printf (print "ray.version: %q: meshray supports Ray 2.10 and later (its ports were measured from 2.10 to "
  "2.60); Ray 1.x and early 2.x open other ports") $r.version) -}}
{{- end -}}
{{- $tag := toString $r.image.tag -}}
{{- if and $tag (not (regexMatch (printf "^%s($|-)" (regexQuoteMeta $r.version)) $tag)) -}}
{{- $problems = append $problems (printf (print "ray.image.tag: %q does not run Ray %s (ray.version): the chart picks the ports for "
  "ray.version, so the tag must start with it (for example %s-py311-gpu), or leave the tag empty to use %s") $tag $r.version $r.version $r.version) -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}

{{/* Env of every group: no entry may re-pin what the port map pins, and names are unique. */}}
{{- define "meshray.validate.podEnv" -}}
{{- $problems := list -}}
{{- $pinned := list "RAY_NODE_IP_ADDRESS" "RAY_ADDRESS" "RAY_IP" "RAY_PORT" "MESHRAY_POD_IP" -}}
{{- range .model.ports -}}{{- with .env -}}{{- $pinned = append $pinned . -}}{{- end -}}{{- end -}}
{{- range .model.groupSources -}}
{{- $key := printf "%s.env" .key -}}
{{- $seen := dict -}}
{{- range $i, $e := (.v.env | default list) -}}
{{- $name := toString (get $e "name") -}}
{{- if or (regexMatch "^RAY_(.+_)?PORT(S|_LIST)?$" $name) (has $name $pinned) -}}
{{- $problems = append $problems (printf (print "%s[%d]: %s would override the ports or the address the chart pins from the port map; set "
  "them under ports (the Service and every group then agree)") $key $i $name) -}}
{{- end -}}
{{- if regexMatch "^RAY_(USE_TLS|TLS_[A-Z_]+)$" $name -}}
{{- $tls := ternary "on: the chart sets it" "off: it would turn Ray TLS on behind the chart's back" $.ctx.Values.rayTls.enabled -}}
{{- $why := "the Sidecars and policies declare each port's protocol from rayTls.enabled; set rayTls.enabled (and rayTls.secretName) instead" -}}
{{- $problems = append $problems (printf "%s[%d]: %s (rayTls.enabled is %s): %s" $key $i $name $tls $why) -}}
{{- end -}}
{{- if and (hasKey $e "value") (hasKey $e "valueFrom") -}}
{{- $problems = append $problems (printf "%s[%d]: %s sets both value and valueFrom; Kubernetes accepts only one" $key $i $name) -}}
{{- end -}}
{{- if hasKey $seen $name -}}
{{- $problems = append $problems (printf "%s[%d].name: %q is listed twice (also %s[%d]); Kubernetes keeps only one" $key $i $name $key (get $seen $name)) -}}
{{- else -}}
{{- $_ := set $seen $name $i -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}

{{/* Volumes of every group: unique names, and every volumeMount names a volume of the pod
(the chart's own volumes included). */}}
{{- define "meshray.validate.podVolumes" -}}
{{- $problems := list -}}
{{- $chartVolumes := list "ray-tls" "ca-tls" -}}
{{- $head := .ctx.Values.head -}}
{{- $defaults := .ctx.Values.workerDefaults -}}
{{- range .model.groupSources -}}
{{- $key := .key -}}
{{- $base := ternary $head $defaults (eq .key "head") -}}
{{- $volumes := .v.volumes | default list -}}
{{- if not (hasKey .v "volumes") -}}{{- $volumes = $base.volumes | default list -}}{{- end -}}
{{- $names := dict -}}
{{- range $i, $vol := $volumes -}}
{{- $n := toString (get $vol "name") -}}
{{- if not $n -}}
{{- $problems = append $problems (printf "%s.volumes[%d].name: missing (got %s); every volume needs a name its volumeMounts refer to" $key $i (toJson $vol)) -}}
{{- else if hasKey $names $n -}}
{{- $problems = append $problems (printf "%s.volumes[%d].name: %q is listed twice" $key $i $n) -}}
{{- end -}}
{{- $_ := set $names $n true -}}
{{- end -}}
{{- range $i, $mount := (.v.volumeMounts | default list) -}}
{{- $n := toString (get $mount "name") -}}
{{- if not (or (hasKey $names $n) (has $n $chartVolumes)) -}}
{{- $problems = append $problems (printf "%s.volumeMounts[%d].name: %q names no volume of the pod; add it to %s.volumes" $key $i $n $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}
