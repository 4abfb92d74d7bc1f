-- Sensor readings, typed, with a readable surrogate key (a sensor reports once per hour).
with source as (
    select * from {{ source('raw_transportation', 'traffic_counts') }}
)

select
    sensor_id || '@' || strftime(cast(counted_at as timestamp), '%Y-%m-%dT%H') as count_id,
    upper(trim(sensor_id)) as sensor_id,
    upper(trim(district)) as district,
    cast(counted_at as timestamp) as counted_at,
    cast(vehicle_count as integer) as vehicle_count,
    cast(heavy_vehicle_count as integer) as heavy_vehicle_count,
    cast(avg_speed_kmh as double) as avg_speed_kmh
from source
