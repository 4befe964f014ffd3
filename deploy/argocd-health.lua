-- Argo CD health check for azswitch.io/ReplicationGroup.
--
-- Install it under the key resource.customizations.health.azswitch.io_ReplicationGroup of argocd-cm
-- (see argocd-cm-patch.yaml beside this file). tests/unit/test_argocd_health.py runs this very file.
--
-- It reads the kstatus conditions the operator writes (Ready always; Reconciling and Stalled only while
-- True; each with observedGeneration) rather than status.phase where it can, because the conditions are
-- the API and the phase is a summary for humans. Order matters, first match wins:
--   1. no status yet                                  -> Progressing (the operator has not looked yet)
--   2. spec.suspend                                   -> Suspended (a declared intent; known from the spec)
--   3. status.observedGeneration < metadata.generation -> Progressing (the status describes an older spec,
--      so its Ready/Stalled say nothing about what Git now asks for)
--   4. Stalled=True or phase Failed                   -> Degraded (needs a human or a spec/cloud change)
--   5. phase Suspended                                -> Suspended
--   6. phase AwaitingApproval                         -> Suspended (see below)
--   7. Reconciling=True or an operation in flight     -> Progressing
--   8. Ready=True (for this generation)               -> Healthy
--   9. Ready=False held for a person (dryRun)         -> Suspended; other Ready=False -> Degraded;
--      Ready Unknown or missing                       -> Progressing
-- Every branch returns a message: Argo CD shows it next to the status and it is what an on-call reads.

local hs = {}

local function condition(conditions, type_)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

local function message_of(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

local function finish(status, message)
  hs.status = status
  hs.message = message
  return hs
end

local spec = obj.spec or {}
local status = obj.status
local generation = (obj.metadata or {}).generation

-- 1. A fresh resource: the operator has not written status yet (or is not running).
if status == nil or (status.phase == nil and status.conditions == nil) then
  if spec.suspend == true then
    return finish("Suspended", "spec.suspend is true: the operator will not act on this group")
  end
  return finish("Progressing", "Waiting for the azswitch operator to observe this ReplicationGroup")
end

local conditions = status.conditions
local ready = condition(conditions, "Ready")
local reconciling = condition(conditions, "Reconciling")
local stalled = condition(conditions, "Stalled")

-- 2. suspend is checked before the generation: it is the user's own declaration and the operator promises
-- to do nothing at all, so there is nothing to wait for; Argo CD's built-ins treat a paused Rollout or a
-- suspended CronJob the same way. The message says whether the operator has confirmed it yet.
if spec.suspend == true then
  if status.phase == "Suspended" and status.observedGeneration == generation then
    return finish("Suspended", message_of(ready, "spec.suspend is true: no cloud calls are made"))
  end
  return finish("Suspended", "spec.suspend is true (not yet confirmed by the operator)")
end

-- 3. kstatus: a status computed from an older spec is not evidence about the current one.
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  return finish(
    "Progressing",
    "Waiting for the operator to observe generation " .. tostring(generation) ..
      " (status is for " .. tostring(status.observedGeneration or "none") .. ")"
  )
end

-- 4. Stalled: progress needs a human, a spec change or a cloud change. A failed operation stays Stalled
-- until the spec changes or it is retried, which is exactly Degraded.
if is_true(stalled) then
  return finish("Degraded", message_of(stalled, "Stalled: " .. tostring(stalled.reason)))
end
if status.phase == "Failed" then
  local last = status.lastOperation or {}
  return finish("Degraded", message_of(ready, last.message or "The last operation failed"))
end

-- 5. Suspended reported by the operator even though spec.suspend is no longer set (status of an
-- in-between state); trust the operator's phase.
if status.phase == "Suspended" then
  return finish("Suspended", message_of(ready, "The operator reports this group as suspended"))
end

-- 6. Manual approval: Suspended, not Progressing and not Degraded. Nothing is broken, so Degraded would
-- page people for a normal workflow; and it will not move on by itself, so Progressing would make a sync
-- wait for it until the sync times out. Suspended is Argo CD's status for "paused until a person acts"
-- (a paused Rollout, a suspended Workflow); the message carries the operator's kubectl command.
if status.phase == "AwaitingApproval" then
  return finish(
    "Suspended",
    "Manual approval needed: " .. message_of(ready, "annotate the resource with azswitch.io/approve=" ..
      tostring(generation))
  )
end

-- 7. Work in progress: an operation in flight, a wait that clears by itself, a transient cloud error.
if status.operation ~= nil then
  local op = status.operation
  return finish(
    "Progressing",
    message_of(reconciling, tostring(op.action) .. " " .. tostring(op.from) .. " -> " .. tostring(op.to) ..
      " " .. tostring(op.state))
  )
end
if is_true(reconciling) then
  return finish("Progressing", message_of(reconciling, "Reconciling: " .. tostring(reconciling.reason)))
end

-- 8. Healthy only when Ready=True for the current generation: status.observedGeneration was checked in 3,
-- and the condition's own observedGeneration must agree (a condition left from an older write is stale).
if is_true(ready) then
  if generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
    return finish(
      "Progressing",
      "Ready is from generation " .. tostring(ready.observedGeneration) .. "; waiting for generation " ..
        tostring(generation)
    )
  end
  return finish("Healthy", message_of(ready, "The primary AZ is where the spec says"))
end

-- 9. Ready=False without Reconciling or Stalled is a hold for a person (the operator marks it so with a
-- Hold blocker, e.g. spec.dryRun): Suspended, as for approval. Anything else that is False is Degraded, and
-- Unknown (or no Ready at all) is Progressing: the operator is still finding out.
if ready ~= nil and ready.status == "False" then
  local plan = status.plan or {}
  for _, b in ipairs(plan.blockers or {}) do
    if b.kind == "Hold" then
      return finish("Suspended", message_of(ready, tostring(b.message)))
    end
  end
  return finish("Degraded", message_of(ready, "Not ready: " .. tostring(ready.reason)))
end
return finish("Progressing", message_of(ready, "Waiting for the operator to report readiness"))
