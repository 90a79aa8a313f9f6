{{/*
Checks of who the Ray pods are and what they may do: their ServiceAccount (the identity the
AuthorizationPolicy admits to the GCS and raylets) and the restricted Pod Security Standard.
Values are written by app teams and the cluster is owned by a platform team, so a value that
weakens either is refused unless its acknowledgement is set (serviceAccount.acknowledgeShared,
podSecurity.acknowledgeUnrestricted); the render then carries the acknowledgement
(meshray.acknowledged) and NOTES and `meshray validate` warn about it. Each define is one rule
family of the chart's validation (see ../_validate.tpl): it returns its problems as a JSON list
of messages and never calls fail.
Usage: include "meshray.validate.<family>" (dict "ctx" $ "model" $m) | fromJsonArray
*/}}

{{/*
Identity: the chart never creates a ServiceAccount named `default` (it would collide with the
namespace's own), and a ServiceAccount the chart does not create for this cluster (the
namespace's `default`, another application's, one shared by several releases) lets every Pod
running as it reach the GCS and raylets, i.e. run code on the cluster: refused unless
serviceAccount.acknowledgeShared.
*/}}
{{- define "meshray.validate.identity" -}}
{{- $v := .ctx.Values -}}
{{- $sa := $v.serviceAccount -}}
{{- $problems := list -}}
{{- if and $sa.create (eq $sa.name "default") -}}
{{- $problems = append $problems (printf (print "serviceAccount.name: %q with serviceAccount.create=true would replace the namespace's own "
  "ServiceAccount, which every Pod without serviceAccountName runs as; leave it empty (the chart names it %s-ray) or pick another name")
  $sa.name (include "meshray.clusterName" .ctx)) -}}
{{- else if and (not $sa.acknowledgeShared) $v.mesh.authorizationPolicy.enabled -}}
{{- range (include "meshray.sharedIdentities" .ctx | fromJsonArray) -}}
{{- $what := printf "%q is a ServiceAccount the chart does not create for this cluster" .name -}}
{{- if eq .key "serviceAccount.create" -}}
{{- $what = printf (print "false with serviceAccount.name empty runs the Ray pods as the namespace's %q ServiceAccount, which every Pod "
  "without serviceAccountName runs as") .name -}}
{{- end -}}
{{- $problems = append $problems (printf (print "%s: %s: the AuthorizationPolicy admits its identity %s to the GCS and raylets (to run code "
  "on the cluster), so every other Pod running as it gets the same access. Let the chart create the cluster's own "
  "(serviceAccount.create=true, no serviceAccountName), or set serviceAccount.acknowledgeShared=true to accept who else runs as it") .key $what .principal) -}}
{{- end -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}

{{/*
The ServiceAccounts the Ray pods run as that the chart does not create for this cluster, as a
JSON list of {key, name, principal}: key is the values key that names it.
Usage: include "meshray.sharedIdentities" . | fromJsonArray
*/}}
{{- define "meshray.sharedIdentities" -}}
{{- $v := .Values -}}
{{- $own := ternary (include "meshray.serviceAccountName" .) "" $v.serviceAccount.create -}}
{{- $out := list -}}
{{- $seen := dict -}}
{{- $sources := list (dict "key" (ternary "serviceAccount.name" "serviceAccount.create" (ne $v.serviceAccount.name "")) "name"
  (include "meshray.serviceAccountName" .)) -}}
{{- range $src := list (list "head" $v.head) (list "workerDefaults" $v.workerDefaults) -}}
{{- with (index $src 1).serviceAccountName -}}{{- $sources = append $sources (dict "key" (printf "%s.serviceAccountName" (index $src 0))
  "name" .) -}}{{- end -}}
{{- end -}}
{{- range $name, $g := ($v.workerGroups | default dict) -}}
{{- with ($g | default dict).serviceAccountName -}}{{- $sources = append $sources (dict "key" (printf "workerGroups.%s.serviceAccountName" $name)
  "name" .) -}}{{- end -}}
{{- end -}}
{{- range $sources -}}
{{- if and (ne .name $own) (not (hasKey $seen .key)) -}}
{{- $_ := set $seen .key true -}}
{{- $out = append $out (dict "key" .key "name" .name "principal" (include "meshray.principal" (dict "ctx" $ "namespace" $.Release.Namespace
  "serviceAccount" .name))) -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
Restricted Pod Security for every Ray pod: the effective securityContexts (podSecurity.* with
each group's own merged over them, meshray.securityContexts), the group's volumes and its
sidecar containers (which get podSecurity.container under their own securityContext). Anything
the restricted Pod Security Standard forbids, uid 1337 (Istio's proxy uid, whose traffic skips
the sidecar), and a restricted default deleted with null are refused unless
podSecurity.acknowledgeUnrestricted (meshray.podSecurityExceptions lists them).
*/}}
{{- define "meshray.validate.podSecurity" -}}
{{- $problems := list -}}
{{- if not .ctx.Values.podSecurity.acknowledgeUnrestricted -}}
{{- range (include "meshray.podSecurityExceptions" .ctx | fromJsonArray) -}}
{{- $problems = append $problems (printf (print "%s: %s; set podSecurity.acknowledgeUnrestricted=true to run the Ray pods outside the "
  "restricted Pod Security Standard (e.g. a GPU workload that needs IPC_LOCK)") .key .problem) -}}
{{- end -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}

{{/*
What takes the Ray pods outside the restricted Pod Security Standard, as a JSON list of
{key, problem}, each naming the values key that causes it and the value (deduplicated: a
setting shared by several groups is named once).
Usage: include "meshray.podSecurityExceptions" . | fromJsonArray
*/}}
{{- define "meshray.podSecurityExceptions" -}}
{{- $v := .Values -}}
{{- $out := list -}}
{{- if not $v.podSecurity.enabled -}}
{{- $out = append $out (dict "key" "podSecurity.enabled" "problem" (print "false drops the restricted securityContexts (non-root uid, no "
  "privilege escalation, every capability dropped, RuntimeDefault seccomp) from every Ray pod")) -}}
{{- else -}}
{{- include "meshray.model" . -}}
{{- $groups := list (dict "g" $v.head "src" (list $v.head) "srcKeys" (list "head")) -}}
{{- range $v._meshrayModel.groups -}}
{{- $over := get ($v.workerGroups | default dict) .name | default dict -}}
{{- $groups = append $groups (dict "g" .values "src" (list $over $v.workerDefaults) "srcKeys" (list (printf "workerGroups.%s" .name) "workerDefaults")) -}}
{{- end -}}
{{- range $grp := $groups -}}
{{- $g := $grp.g -}}
{{- $srcKeys := $grp.srcKeys -}}
{{- $owner := dict -}}
{{- range $f := list "securityContext" "podSecurityContext" "volumes" "sidecarContainers" -}}
{{- $_ := set $owner $f (index $srcKeys 0) -}}
{{- range $j, $sv := (reverse $grp.src) -}}{{- if hasKey $sv $f -}}{{- $_ := set $owner $f (index (reverse $srcKeys) $j) -}}{{- end -}}{{- end -}}
{{- end -}}
{{- $sc := include "meshray.securityContexts" (dict "ctx" $ "group" $g) | fromJson -}}
{{- $containers := list (dict "sc" $sc.container "own" ($g.securityContext | default dict) "key" (printf "%s.securityContext"
  (get $owner "securityContext"))) -}}
{{- range $i, $c := ($g.sidecarContainers | default list) -}}
{{- $own := get $c "securityContext" | default dict -}}
{{- $merged := mergeOverwrite (deepCopy (and $v.podSecurity.enabled $v.podSecurity.container | default dict)) (deepCopy $own) -}}
{{- $containers = append $containers (dict "sc" $merged "own" $own "key" (printf "%s.sidecarContainers[%d].securityContext"
  (get $owner "sidecarContainers") $i)) -}}
{{- end -}}
{{- range $c := $containers -}}
{{- $s := $c.sc -}}
{{- /* a field the group sets is blamed on the group, one it inherits on podSecurity.container */ -}}
{{- $blame := dict -}}
{{- range $f := list "privileged" "allowPrivilegeEscalation" "capabilities" "runAsUser" "runAsGroup"
  "runAsNonRoot" "seccompProfile" "appArmorProfile" "procMount" "windowsOptions" -}}
{{- $_ := set $blame $f (printf "%s.%s" (ternary $c.key "podSecurity.container" (hasKey $c.own $f)) $f) -}}
{{- end -}}
{{- if eq (toString (dig "privileged" false $s)) "true" -}}
{{- $out = append $out (dict "key" (get $blame "privileged") "problem" "true runs the container privileged (every device and capability of the node)") -}}
{{- end -}}
{{- if ne (toString (dig "allowPrivilegeEscalation" "" $s)) "false" -}}
{{- $out = append $out (dict "key" (get $blame "allowPrivilegeEscalation") "problem" (printf (print "%s: the restricted standard requires "
  "false (a null in podSecurity.container deletes that default)") (toJson (dig "allowPrivilegeEscalation" nil $s)))) -}}
{{- end -}}
{{- $added := list -}}
{{- range (dig "capabilities" "add" list $s) -}}{{- if ne (toString .) "NET_BIND_SERVICE" -}}{{- $added = append $added (toString .) -}}{{- end -}}{{- end -}}
{{- if $added -}}
{{- $out = append $out (dict "key" (printf "%s.add" (get $blame "capabilities")) "problem" (printf (print "%s: the restricted standard "
  "allows adding only NET_BIND_SERVICE") (toJson $added))) -}}
{{- end -}}
{{- if not (has "ALL" (dig "capabilities" "drop" list $s)) -}}
{{- $out = append $out (dict "key" (printf "%s.drop" (get $blame "capabilities")) "problem" (printf (print "%s: the restricted standard "
  "requires dropping ALL capabilities (a null in podSecurity.container deletes that default)") (toJson (dig "capabilities" "drop" nil $s)))) -}}
{{- end -}}
{{- $uid := toString (dig "runAsUser" "" $s) -}}
{{- if has $uid (list "0" "1337") -}}
{{- $out = append $out (dict "key" (get $blame "runAsUser") "problem" (printf "%s: %s" $uid (ternary "uid 0 is root" (print "uid 1337 is "
  "Istio's proxy uid: iptables lets its traffic skip the sidecar, so it leaves the pod without mTLS or policy") (eq $uid "0")))) -}}
{{- end -}}
{{- if eq (toString (dig "runAsGroup" "" $s)) "1337" -}}
{{- $out = append $out (dict "key" (get $blame "runAsGroup") "problem" (print "1337: gid 1337 is Istio's proxy group: iptables lets its "
  "traffic skip the sidecar, so it leaves the pod without mTLS or policy")) -}}
{{- end -}}
{{- /* runAsNonRoot: the container's own, else the pod's */ -}}
{{- $nonRoot := ternary (dig "runAsNonRoot" "" $s) (dig "runAsNonRoot" "" $sc.pod) (hasKey $s "runAsNonRoot") -}}
{{- if ne (toString $nonRoot) "true" -}}
{{- $out = append $out (dict "key" (get $blame "runAsNonRoot") "problem" (printf (print "%s: the restricted standard requires "
  "runAsNonRoot=true in the container or the pod (a null in podSecurity.* deletes that default)") (toJson (dig "runAsNonRoot" nil $s)))) -}}
{{- end -}}
{{- $seccomp := dig "seccompProfile" "type" (dig "seccompProfile" "type" "" $sc.pod) $s -}}
{{- if not (has $seccomp (list "RuntimeDefault" "Localhost")) -}}
{{- $out = append $out (dict "key" (printf "%s.type" (get $blame "seccompProfile")) "problem" (printf (print "%q: the restricted standard "
  "requires seccompProfile RuntimeDefault or Localhost in the container or the pod (a null in podSecurity.* deletes that default)") $seccomp)) -}}
{{- end -}}
{{- if eq (dig "appArmorProfile" "type" "" $s) "Unconfined" -}}
{{- $out = append $out (dict "key" (printf "%s.type" (get $blame "appArmorProfile")) "problem" "\"Unconfined\" turns AppArmor off for the container") -}}
{{- end -}}
{{- if eq (toString (dig "procMount" "" $s)) "Unmasked" -}}
{{- $out = append $out (dict "key" (get $blame "procMount") "problem" "\"Unmasked\" exposes the host's /proc paths the runtime masks") -}}
{{- end -}}
{{- if eq (toString (dig "windowsOptions" "hostProcess" false $s)) "true" -}}
{{- $out = append $out (dict "key" (printf "%s.hostProcess" (get $blame "windowsOptions")) "problem" "true runs the container as a process on the Windows host"
  ) -}}
{{- end -}}
{{- end -}}
{{- $ownPod := $g.podSecurityContext | default dict -}}
{{- $podKey := dict -}}
{{- range $f := list "runAsUser" "runAsGroup" "seccompProfile" "appArmorProfile" "sysctls" -}}
{{- $_ := set $podKey $f (printf "%s.%s" (ternary (printf "%s.podSecurityContext" (get $owner "podSecurityContext")) "podSecurity.pod" (hasKey $ownPod
  $f)) $f) -}}
{{- end -}}
{{- $podUid := toString (dig "runAsUser" "" $sc.pod) -}}
{{- if has $podUid (list "0" "1337") -}}
{{- $out = append $out (dict "key" (get $podKey "runAsUser") "problem" (printf "%s: %s" $podUid (ternary "uid 0 is root" (print "uid 1337 "
  "is Istio's proxy uid: iptables lets its traffic skip the sidecar, so it leaves the pod without mTLS or policy") (eq $podUid "0")))) -}}
{{- end -}}
{{- if eq (toString (dig "runAsGroup" "" $sc.pod)) "1337" -}}
{{- $out = append $out (dict "key" (get $podKey "runAsGroup") "problem" (print "1337: gid 1337 is Istio's proxy group: iptables lets its "
  "traffic skip the sidecar, so it leaves the pod without mTLS or policy")) -}}
{{- end -}}
{{- range $f := list "seccompProfile" "appArmorProfile" -}}
{{- if eq (dig $f "type" "" $sc.pod) "Unconfined" -}}
{{- $out = append $out (dict "key" (printf "%s.type" (get $podKey $f)) "problem" (printf "\"Unconfined\" turns %s off for the pod" (ternary "seccomp"
  "AppArmor" (eq $f "seccompProfile")))) -}}
{{- end -}}
{{- end -}}
{{- $safe := list "kernel.shm_rmid_forced" "net.ipv4.ip_local_port_range"
  "net.ipv4.ip_unprivileged_port_start" "net.ipv4.tcp_syncookies"
  "net.ipv4.ping_group_range" "net.ipv4.ip_local_reserved_ports"
  "net.ipv4.tcp_keepalive_time" "net.ipv4.tcp_fin_timeout" "net.ipv4.tcp_keepalive_intvl"
  "net.ipv4.tcp_keepalive_probes" -}}
{{- range $i, $sysctl := (dig "sysctls" list $sc.pod) -}}
{{- if not (has (toString (get $sysctl "name")) $safe) -}}
{{- $out = append $out (dict "key" (printf "%s[%d]" (get $podKey "sysctls") $i) "problem" (printf (print "%q is not one of Kubernetes' safe "
  "sysctls: it changes the node's kernel for every pod") (toString (get $sysctl "name")))) -}}
{{- end -}}
{{- end -}}
{{- range $i, $vol := ($g.volumes | default list) -}}
{{- if hasKey $vol "hostPath" -}}
{{- $out = append $out (dict "key" (printf "%s.volumes[%d].hostPath" (get $owner "volumes") $i) "problem" (printf (print "%s mounts the "
  "node's filesystem into the Ray pod") (toJson (get $vol "hostPath")))) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $dedup := list -}}
{{- $seen := dict -}}
{{- range $out -}}
{{- $id := printf "%s %s" .key .problem -}}
{{- if not (hasKey $seen $id) -}}{{- $_ := set $seen $id true -}}{{- $dedup = append $dedup . -}}{{- end -}}
{{- end -}}
{{- toJson $dedup -}}
{{- end -}}
