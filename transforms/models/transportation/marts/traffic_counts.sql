-- Hourly traffic per sensor, published as-is: counts carry no personal data.
select
    count_id,
    sensor_id,
    district,
    counted_at,
    vehicle_count,
    heavy_vehicle_count,
    avg_speed_kmh,
    dayofweek(counted_at) in (0, 6) as is_weekend
from {{ ref('stg_transportation__traffic_counts') }}
