-- Station readings, typed; a missing pollutant value means the sensor was out, kept as null.
with source as (
    select * from {{ source('raw_environment', 'air_quality') }}
)

select
    station_id || '@' || strftime(cast(measured_at as timestamp), '%Y-%m-%dT%H') as reading_id,
    upper(trim(station_id)) as station_id,
    upper(trim(district)) as district,
    cast(measured_at as timestamp) as measured_at,
    cast(pm25 as double) as pm25,
    cast(no2 as double) as no2,
    cast(o3 as double) as o3
from source
