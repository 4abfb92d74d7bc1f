-- Collision register. Exact coordinates can identify people (a home driveway), so the contract
-- marks them for generalisation; aggregates elsewhere use the district.
select
    collision_id,
    occurred_at,
    district,
    latitude,
    longitude,
    severity,
    vehicles,
    injuries,
    fatalities,
    weather,
    road_condition
from {{ ref('stg_transportation__collisions') }}
