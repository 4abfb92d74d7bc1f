-- traffic_counts v2 (latest, served as `transportation.traffic_counts`): the same hourly counts,
-- with the counts renamed to the open-data schema (`vehicles`, `heavy_vehicles`, as in collisions).
-- A rename breaks consumers, hence a new model version rather than an edit of v1.
select
    count_id,
    sensor_id,
    district,
    counted_at,
    vehicle_count as vehicles,
    heavy_vehicle_count as heavy_vehicles,
    avg_speed_kmh,
    dayofweek(counted_at) in (0, 6) as is_weekend
from {{ ref('stg_transportation__traffic_counts') }}
