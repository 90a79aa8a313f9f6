-- Argo CD health check for ray.io/RayCluster (KubeRay v1.1 to v1.7).
-- Install: argocd-cm key `resource.customizations.health.ray.io_RayCluster`
-- (see argocd-cm-raycluster-health.yaml next to this file).
--
-- KubeRay >= 1.2 reports conditions (RayClusterProvisioned, HeadPodReady, ReplicaFailure,
-- RayClusterSuspending, RayClusterSuspended); they win when present. Older operators (and
-- newer ones with the RayClusterStatusConditions gate off) only set status.state:
-- ready | suspended | failed | unhealthy.
-- Written for Lua 5.1 as embedded by Argo CD (gopher-lua): base, string and table only.

local hs = {}

local function condition(status, ctype)
  if type(status.conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

local function describe(c, fallback)
  if c ~= nil then
    if c.message ~= nil and c.message ~= "" then
      return c.message
    end
    if c.reason ~= nil and c.reason ~= "" then
      return c.reason
    end
  end
  return fallback
end

local function workers(status)
  local ready = status.readyWorkerReplicas or status.availableWorkerReplicas or 0
  local desired = status.desiredWorkerReplicas or 0
  return tostring(ready) .. "/" .. tostring(desired) .. " workers ready"
end

local function health()
  local status = obj.status
  if status == nil then
    return "Progressing", "Waiting for KubeRay to report the RayCluster status"
  end
  local generation = obj.metadata and obj.metadata.generation
  if generation ~= nil and status.observedGeneration ~= nil
      and status.observedGeneration < generation then
    return "Progressing", "Waiting for KubeRay to observe generation " .. tostring(generation)
  end

  local suspended = condition(status, "RayClusterSuspended")
  local suspending = condition(status, "RayClusterSuspending")
  local failure = condition(status, "ReplicaFailure")
  local provisioned = condition(status, "RayClusterProvisioned")
  local head = condition(status, "HeadPodReady")

  if is_true(suspended) then
    return "Suspended", describe(suspended, "RayCluster is suspended")
  end
  if is_true(suspending) then
    return "Progressing", describe(suspending, "RayCluster is suspending")
  end
  if is_true(failure) then
    return "Degraded", describe(failure, "KubeRay failed to create or delete a Ray Pod")
  end
  if provisioned ~= nil or head ~= nil then
    if not is_true(provisioned) then
      return "Progressing", describe(provisioned, "Ray Pods are being provisioned")
    end
    if head ~= nil and not is_true(head) then
      return "Degraded", "Head Pod not ready: " .. describe(head, "unknown reason")
    end
    return "Healthy", "RayCluster is ready: " .. workers(status)
  end

  -- No conditions: fall back to the (deprecated) state field.
  local state = status.state
  if state == "ready" then
    return "Healthy", "RayCluster is ready: " .. workers(status)
  end
  if state == "suspended" then
    return "Suspended", "RayCluster is suspended"
  end
  if state == "failed" or state == "unhealthy" then
    local reason = status.reason
    if reason == nil or reason == "" then
      reason = "KubeRay reports state " .. state
    end
    return "Degraded", reason
  end
  if state ~= nil and state ~= "" then
    return "Progressing", "RayCluster state: " .. state
  end
  return "Progressing", "Waiting for the RayCluster to become ready"
end

hs.status, hs.message = health()
return hs
