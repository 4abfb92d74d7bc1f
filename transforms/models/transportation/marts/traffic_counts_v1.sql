-- traffic_counts v1: hourly traffic per sensor, published as-is (counts carry no personal data).
-- The original contract, kept for consumers that still read `vehicle_count` (city_ops pins it);
-- served as `transportation.traffic_counts_v1` now that v2 is the latest.
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
