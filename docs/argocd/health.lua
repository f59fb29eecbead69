-- Argo CD health check for imagestack.dev/ImageOptimizationStack (Lua 5.1, as gopher-lua runs it).
-- Reads the kstatus conditions the operator writes (Ready, Reconciling, Stalled) and
-- status.observedGeneration:
--   Degraded     Stalled=True for the current generation: a human must act (AccessDenied,
--                NameConflict, BucketNotEmpty, InvalidSpec, ...).
--   Healthy      Ready=True and status.observedGeneration == metadata.generation.
--   Suspended    Ready reason Paused: annotation imagestack.dev/paused=true stops AWS writes.
--   Progressing  anything else: no status yet, a new generation not yet observed, creating,
--                waiting for CloudFront, retrying a throttled or transient AWS error.
local hs = {}

local function condition(conditions, t)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == t then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c == nil then
    return fallback
  end
  local text = c.reason or fallback
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the imagestack operator to report status"
  return hs
end

local observed = obj.status.observedGeneration
local current = observed ~= nil and generation ~= nil and observed == generation
local conditions = obj.status.conditions
local ready = condition(conditions, "Ready")
local stalled = condition(conditions, "Stalled")

-- A Stalled condition about an older generation is stale: the operator has not looked at the
-- new spec yet (which may be the fix), so that is progress, not degradation.
local stalledCurrent = stalled ~= nil and stalled.status == "True" and
  (stalled.observedGeneration == nil or generation == nil or stalled.observedGeneration == generation)

if stalledCurrent then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Stalled")
  return hs
end

if not current then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation) ..
    " (observed " .. tostring(observed) .. ")"
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end

if ready ~= nil and ready.reason == "Paused" then
  hs.status = "Suspended"
  hs.message = describe(ready, "Paused")
  return hs
end

hs.status = "Progressing"
local reconciling = condition(conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.message = describe(reconciling, "Reconciling")
else
  hs.message = describe(ready, "Reconciling")
end
return hs
