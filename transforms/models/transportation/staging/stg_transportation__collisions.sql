-- Collision reports, typed; categorical fields lower-cased for stable accepted values.
with source as (
    select * from {{ source('raw_transportation', 'collisions') }}
)

select
    collision_id,
    cast(occurred_at as timestamp) as occurred_at,
    upper(trim(district)) as district,
    cast(latitude as double) as latitude,
    cast(longitude as double) as longitude,
    lower(trim(severity)) as severity,
    cast(vehicles as integer) as vehicles,
    cast(injuries as integer) as injuries,
    cast(fatalities as integer) as fatalities,
    lower(trim(weather)) as weather,
    lower(trim(road_condition)) as road_condition
from source
