-- What a version's artefact holds, so a worker knows how to serve it on the shared trunk
-- (consumer/serving.py):
--   network  a whole SqueezeNet state_dict (`training fit`); served as a head on the shared
--            trunk when its features are the base's (frozen training), else on its own trunk
--   map      ImageNet classes grouped into categories (`training map`): no training
--   mix      a map that learned from labels (`training fit --init-from NAME@N`)
ALTER TABLE models ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'network'
    CHECK (kind IN ('network', 'map', 'mix'));
