{{/*
Checks of the cluster itself: names, the port map, per-group values, Ray versions.
Each define is one rule family of the chart's validation (see ../_validate.tpl): it returns
its problems as a JSON list of messages and never calls fail.
Usage: include "meshray.validate.<family>" (dict "ctx" $ "model" $m) | fromJsonArray
*/}}

{{/* Names: the cluster name prefixes every object and must fit once suffixed. */}}
{{- define "meshray.validate.names" -}}
{{- $v := .ctx.Values -}}
{{- $problems := list -}}
{{- $cluster := include "meshray.clusterName" .ctx -}}
{{- $nameKey := "clusterName" -}}
{{- if not $v.clusterName -}}
{{- $nameKey = printf "clusterName: empty, so the release name %q names the cluster" .ctx.Release.Name -}}
{{- if $v.fullnameOverride -}}
{{- $nameKey = "fullnameOverride" -}}
{{- else if $v.nameOverride -}}
{{- $nameKey = printf "nameOverride: %q with the release name %q (clusterName is empty) gives the cluster name" $v.nameOverride .ctx.Release.Name -}}
{{- end -}}
{{- end -}}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $cluster) -}}
{{- $problems = append $problems (printf (print "%s: %q is not a DNS-1035 label (lower-case letters, digits and '-', starting with a "
  "letter): the RayCluster and its Services are named after it") $nameKey $cluster) -}}
{{- end -}}
{{- $svc := include "meshray.headlessServiceName" .ctx -}}
{{- if gt (len $svc) 63 -}}
{{- $problems = append $problems (printf "%s: %q is %d characters, so the headless Service name %q exceeds 63; use at most 50 characters"
  $nameKey $cluster (len $cluster) $svc) -}}
{{- end -}}
{{- /* The chart writes <service>.<namespace>.svc.<clusterDomain> itself: a domain with its own
"svc" label would name every Pod and Service under a domain the cluster DNS does not serve. */ -}}
{{- if regexMatch "^(.*\\.)?svc(\\..*)?$" $v.clusterDomain -}}
{{- $why := "the chart writes <service>.<namespace>.svc.<clusterDomain> itself; give the cluster's DNS domain alone, such as cluster.local" -}}
{{- $problems = append $problems (printf "clusterDomain: %q contains the label svc: %s" $v.clusterDomain $why) -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}

{{/* Worker ports (the model's: a list, or a range): range order, size ceiling, list
duplicates. */}}
{{- define "meshray.validate.workerPorts" -}}
{{- $p := .ctx.Values.ports -}}
{{- $w := .model.workerRange -}}
{{- $problems := list -}}
{{- if not $w -}}
{{- $seen := dict -}}
{{- range .model.workerPorts -}}
{{- $k := toString (int .) -}}
{{- if eq (get $seen $k) "once" -}}
{{- $problems = append $problems (printf "ports.workerPortList: port %d is listed twice" (int .)) -}}
{{- $_ := set $seen $k "reported" -}}
{{- else if not (hasKey $seen $k) -}}
{{- $_ := set $seen $k "once" -}}
{{- end -}}
{{- end -}}
{{- if gt (len .model.workerPorts) (int $p.maxWorkerPorts) -}}
{{- $problems = append $problems (printf (print "ports.workerPortList: %d worker ports exceed ports.maxWorkerPorts=%d. Every worker port is "
  "a Service port, and each Istio sidecar is programmed per pod and port (Ray's default range 10002-19999 got pods OOM-killed, "
  "kuberay#1005); shorten the list or raise ports.maxWorkerPorts deliberately") (len .model.workerPorts) (int $p.maxWorkerPorts)) -}}
{{- end -}}
{{- else -}}
{{- if le $w.max $w.min -}}
{{- $problems = append $problems (printf "ports.maxWorkerPort: %d must be greater than ports.minWorkerPort (%d); Ray refuses max-worker-port <= min-worker-port"
  $w.max $w.min) -}}
{{- end -}}
{{- $count := add1 (sub $w.max $w.min) -}}
{{- if gt (int $count) (int $p.maxWorkerPorts) -}}
{{- $problems = append $problems (printf (print "ports.maxWorkerPort: the worker range %d-%d is %d ports, above ports.maxWorkerPorts=%d. "
  "Every worker port is a Service port, and each Istio sidecar is programmed per pod and port (Ray's default range 10002-19999 got pods "
  "OOM-killed, kuberay#1005); narrow the range or raise ports.maxWorkerPorts deliberately") $w.min $w.max (int $count) (int $p.maxWorkerPorts)) -}}
{{- end -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}

{{/* Every port number is used by exactly one component (duplicates within workerPortList are
the workerPorts family's). */}}
{{- define "meshray.validate.uniquePorts" -}}
{{- $problems := list -}}
{{- $owner := dict -}}
{{- range .model.ports -}}
{{- $k := toString (int .port) -}}
{{- if hasKey $owner $k -}}
{{- $problems = append $problems (printf "%s: port %s is already used by %s; every Ray port must be unique (Ray itself refuses duplicate ports)"
  .key $k (get $owner $k)) -}}
{{- else -}}
{{- $_ := set $owner $k .key -}}
{{- end -}}
{{- end -}}
{{- $workersKey := .model.workerPortsKey -}}
{{- range .model.workerPorts -}}
{{- $k := toString (int .) -}}
{{- if hasKey $owner $k -}}
{{- $problems = append $problems (printf "%s: port %s is already used by %s; every Ray port must be unique (Ray itself refuses duplicate ports)"
  $workersKey $k (get $owner $k)) -}}
{{- end -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}

{{/*
Extra rayStartParams are data, never shell. KubeRay joins them into `ray start --key=value`
inside `bash -lc` without quoting (convertParamMap), so: a key must be a ray start flag name
(lower-case words joined by "-"), never one the port map owns; a value must not re-set an
owned flag, and may hold no control character (a newline ends the command) and no quote
character bash would interpret. Any other value that is not plain (JSON for --resources, a
path with a space) the chart wraps in single quotes (meshray.rayStartParamValue), as KubeRay
itself writes --resources; a value already wrapped in single quotes passes as it is.
*/}}
{{- define "meshray.validate.rayStartParams" -}}
{{- $v := .ctx.Values -}}
{{- $problems := list -}}
{{- /* The flags the port map owns (the model's), and those Ray or KubeRay set otherwise. */ -}}
{{- $owned := .model.ownedFlags -}}
{{- $ownedRe := printf "(^|[^-a-z0-9])--?(%s|gcs-server-port|dashboard-grpc-port|address)([^-a-z0-9]|$)"
  (join "|" $owned) -}}
{{- range .model.groupSources -}}
{{- $key := printf "%s.rayStartParams" .key -}}
{{- range $given, $raw := (.v.rayStartParams | default dict) -}}
{{- $val := toString $raw -}}
{{- /* ray start reads --object-manager-port, object_manager_port and OBJECT-MANAGER-PORT alike */ -}}
{{- $flag := $given | trimPrefix "-" | trimPrefix "-" | replace "_" "-" | lower -}}
{{- if eq $flag "gcs-server-port" -}}
{{- $problems = append $problems (printf "%s.%s: %q: --gcs-server-port is deprecated and Ray 2.48 removed it (ray.version=%s); the GCS port is ports.gcs"
  $key $given $val $v.ray.version) -}}
{{- else if eq $flag "dashboard-grpc-port" -}}
{{- if semverCompare ">=2.48.0-0" $v.ray.version -}}
{{- $problems = append $problems (printf "%s.%s: %q: Ray 2.48 removed --dashboard-grpc-port (ray.version=%s); remove it" $key $given $val $v.ray.version) -}}
{{- else -}}
{{- $problems = append $problems (printf (print "%s.%s: %q: the chart pins it from ports.dashboardGrpc when ray.version < 2.45 "
  "(ray.version=%s); set ports.dashboardGrpc instead") $key $given $val $v.ray.version) -}}
{{- end -}}
{{- else if eq $flag "address" -}}
{{- $problems = append $problems (printf "%s.%s: %q: KubeRay sets the workers' GCS address from the head Service itself; remove it" $key $given $val) -}}
{{- else if has $flag $owned -}}
{{- $problems = append $problems (printf (print "%s.%s: %q overrides a port the chart pins from the port map; set it under ports (or "
  "clusterDomain for node-ip-address) so the Service and every group agree") $key $given $val) -}}
{{- else if not (regexMatch "^[a-z0-9]+(-[a-z0-9]+)*$" $given) -}}
{{- $problems = append $problems (printf (print "%s: the key %q is not a ray start flag name (lower-case letters and digits in words joined "
  "by a dash, no leading dashes, no spaces or other characters): KubeRay writes it unquoted into the shell command as --%s") $key $given $given) -}}
{{- else if regexMatch "[[:cntrl:]]" $val -}}
{{- $problems = append $problems (printf (print "%s.%s: %q holds a control character (a newline, tab or a block scalar's trailing newline): "
  "KubeRay writes the value into a bash command line, where a newline ends `ray start` and runs the rest as another command; write it on "
  "one line") $key $given $val) -}}
{{- else if regexMatch $ownedRe (lower $val | replace "_" "-") -}}
{{- $problems = append $problems (printf (print "%s.%s: %q sets another ray start flag the chart owns (the port map's ports, the worker "
  "range, node-ip-address, address); set only this flag's own value") $key $given $val) -}}
{{- else if regexMatch "^\"(.*)\"$" $val -}}
{{- $problems = append $problems (printf (print "%s.%s: %q is wrapped in double quotes for bash (the KubeRay docs' style): the chart quotes "
  "every value that needs it, so Ray would receive the quotes; write the value bare (JSON such as {\"GPU\": 1} as it is)") $key $given $val) -}}
{{- else if and (contains "'" $val) (not (regexMatch "^'[^']*'$" $val)) -}}
{{- $problems = append $problems (printf (print "%s.%s: %q holds a single quote: the chart passes values that need quoting to bash in "
  "single quotes, which cannot hold one; remove it (or wrap the whole value in single quotes yourself)") $key $given $val) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}

{{/* KubeRay owns these pod labels. */}}
{{- define "meshray.validate.podLabels" -}}
{{- $problems := list -}}
{{- range .model.groupSources -}}
{{- $key := printf "%s.labels" .key -}}
{{- $labels := .v.labels | default dict -}}
{{- range $l := keys $labels | sortAlpha -}}
{{- if regexMatch "^(ray|meshray)\\.io/.*$" $l -}}
{{- $problems = append $problems (printf (print "%s.%s: %q: KubeRay (ray.io/) or the chart (meshray.io/) sets these labels itself and the "
  "chart's selectors rely on them; remove it") $key $l (toString (get $labels $l))) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}

{{/* Labels of the rendered objects (commonLabels, service.labels): a key the chart writes itself
would appear twice in one labels map, a manifest the API server or a GitOps diff reads either
way; and two user maps must not give one key two values. */}}
{{- define "meshray.validate.objectLabels" -}}
{{- $v := .ctx.Values -}}
{{- $problems := list -}}
{{- $own := list "helm.sh/chart" "app.kubernetes.io/name" "app.kubernetes.io/instance" "app.kubernetes.io/version"
  "app.kubernetes.io/managed-by" "app.kubernetes.io/component" -}}
{{- $why := "the chart sets this label on every object it renders; remove it (the chart's value stays)" -}}
{{- range $key, $labels := dict "commonLabels" ($v.commonLabels | default dict) "service.labels" ($v.service.labels | default dict) -}}
{{- range $l := keys $labels | sortAlpha -}}
{{- if or (has $l $own) (regexMatch "^(ray|meshray)\\.io/.*$" $l) -}}
{{- $problems = append $problems (printf "%s.%s: %q: %s" $key $l (toString (get $labels $l)) $why) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $l := keys ($v.service.labels | default dict) | sortAlpha -}}
{{- if hasKey ($v.commonLabels | default dict) $l -}}
{{- $problems = append $problems (printf "service.labels.%s: %q is also in commonLabels, and both go into the headless Service's labels; set it in one place"
  $l (toString (get $v.service.labels $l))) -}}
{{- end -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}

{{/* Group names and replica bounds per worker group. */}}
{{- define "meshray.validate.replicas" -}}
{{- $problems := list -}}
{{- range .model.groups -}}
{{- $g := .values -}}
{{- if gt (len .name) 63 -}}
{{- $problems = append $problems (printf "workerGroups.%s: the group name is %d characters; it becomes the ray.io/group label, which allows 63"
  .name (len .name)) -}}
{{- end -}}
{{- if or (lt (int $g.replicas) (int $g.minReplicas)) (gt (int $g.replicas) (int $g.maxReplicas)) -}}
{{- $problems = append $problems (printf "workerGroups.%s.replicas: %d is outside minReplicas..maxReplicas (%d..%d)"
  .name (int $g.replicas) (int $g.minReplicas) (int $g.maxReplicas)) -}}
{{- end -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}

{{/* Ray token auth. */}}
{{- define "meshray.validate.rayAuth" -}}
{{- $v := .ctx.Values -}}
{{- $problems := list -}}
{{- if and $v.rayAuth.enabled (semverCompare "<2.52.0-0" $v.ray.version) -}}
{{- $problems = append $problems (printf "rayAuth.enabled: true needs Ray >= 2.52 for token authentication (ray.version=%s)" $v.ray.version) -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}

{{/* Serve modes that bind ports the mesh cannot know (ray#64544). */}}
{{- define "meshray.validate.serveModes" -}}
{{- $problems := list -}}
{{- range .model.groupSources -}}
{{- $key := printf "%s.env" .key -}}
{{- range (.v.env | default list) -}}
{{- if and (has .name (list "RAY_SERVE_THROUGHPUT_OPTIMIZED" "RAY_SERVE_ENABLE_DIRECT_INGRESS" "RAY_SERVE_ENABLE_HA_PROXY"))
  (has (toString .value | lower) (list "1" "true")) -}}
{{- $problems = append $problems (printf (print "%s: %s=%q makes Ray Serve bind replica ports at random or from a range, which no Service "
  "can declare, so the mesh cannot carry that traffic (ray#64544); remove it") $key .name (toString .value)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}

{{/*
Upgrade: KubeRay leaves running pods with the ray start flags they were created with; only
spec.upgradeStrategy.type=Recreate (KubeRay >= 1.6.0) replaces them when the spec changes
(measured with the real operators v1.1.0 and v1.6.2, tests/cluster/test_upgrade.py). So a
helm upgrade that changes the port map is refused unless both the live RayCluster and the new
values say Recreate, or the user says they will delete the pods. It reads the live RayCluster
with lookup: under `helm template` (Argo CD) lookup returns nothing and the rule stays silent;
`meshray audit --cluster` finds stale pods there.
*/}}
{{- define "meshray.validate.upgrade" -}}
{{- $ctx := .ctx -}}
{{- $v := $ctx.Values -}}
{{- $problems := list -}}
{{- if and $ctx.Release.IsUpgrade (not $v.kuberay.allowPortChangeWithoutRecreate) -}}
{{- $name := include "meshray.clusterName" $ctx -}}
{{- $live := lookup "ray.io/v1" "RayCluster" $ctx.Release.Namespace $name -}}
{{- if $live -}}
{{- $liveStrategy := dig "spec" "upgradeStrategy" "type" "" $live -}}
{{- $liveSum := dig "metadata" "annotations" "meshray.io/port-map-checksum" "" $live -}}
{{- $recreate := and (eq $liveStrategy "Recreate") (eq $v.kuberay.upgradeStrategy "Recreate") -}}
{{- if and (not $recreate) (ne $liveSum .model.portMapChecksum) -}}
{{- $problems = append $problems (printf (print "ports: this upgrade changes the port map of RayCluster %q (port-map checksum %q, new %q), "
  "but its running pods keep their old `ray start` flags: KubeRay replaces them only when the live RayCluster already has "
  "spec.upgradeStrategy.type=Recreate and keeps it (live: %q, kuberay.upgradeStrategy: %q), so Ray would use ports the Services no longer "
  "declare and hang in the mesh. Either set kuberay.upgradeStrategy=Recreate first (KubeRay >= 1.6.0; helm upgrade without port changes, "
  "then this one), or run this upgrade with --set kuberay.allowPortChangeWithoutRecreate=true and then: kubectl delete pod -n %s -l "
  "ray.io/cluster=%s") $name $liveSum .model.portMapChecksum $liveStrategy $v.kuberay.upgradeStrategy $ctx.Release.Namespace $name) -}}
{{- end -}}
{{- end -}}
{{- /* A RayJob: KubeRay disregards later changes to its rayClusterSpec, so its running
cluster keeps the old ports whatever the strategy (measured: tests/cluster/test_cluster_rayjob.py). */ -}}
{{- $job := lookup "ray.io/v1" "RayJob" $ctx.Release.Namespace $name -}}
{{- if and $job (include "meshray.ownsCluster" $ctx) (eq $v.workload.kind "RayJob") -}}
{{- $jobSum := dig "metadata" "annotations" "meshray.io/port-map-checksum" "" $job -}}
{{- if and $jobSum (ne $jobSum .model.portMapChecksum) -}}
{{- $problems = append $problems (printf (print "ports: this upgrade changes the port map of RayJob %q (port-map checksum %q, new %q), but "
  "KubeRay disregards changes to a RayJob's rayClusterSpec, so the job's cluster keeps its old ports while the Services would declare the "
  "new ones. Delete the RayJob first (kubectl delete rayjob -n %s %s; its cluster goes with it), then upgrade: the new RayJob runs a new "
  "cluster on the new ports") $name $jobSum .model.portMapChecksum $ctx.Release.Namespace $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}
