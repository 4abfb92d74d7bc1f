-- Hourly readings plus the PM2.5 Air Quality Index (US EPA 2024 breakpoints, linear within a band).
with readings as (
    select * from {{ ref('stg_environment__air_quality') }}
),

banded as (
    select
        *,
        -- EPA truncates PM2.5 to one decimal before looking up the band.
        trunc(pm25 * 10) / 10 as pm25_t
    from readings
),

indexed as (
    select
        *,
        case
            when pm25_t is null then null
            when pm25_t <= 9.0 then 50.0 / 9.0 * pm25_t
            when pm25_t <= 35.4 then 51 + (100 - 51) / (35.4 - 9.1) * (pm25_t - 9.1)
            when pm25_t <= 55.4 then 101 + (150 - 101) / (55.4 - 35.5) * (pm25_t - 35.5)
            when pm25_t <= 125.4 then 151 + (200 - 151) / (125.4 - 55.5) * (pm25_t - 55.5)
            when pm25_t <= 225.4 then 201 + (300 - 201) / (225.4 - 125.5) * (pm25_t - 125.5)
            else least(301 + (500 - 301) / (325.4 - 225.5) * (pm25_t - 225.5), 500)
        end as aqi_raw
    from banded
)

select
    reading_id,
    station_id,
    district,
    measured_at,
    pm25,
    no2,
    o3,
    cast(round(aqi_raw) as integer) as aqi,
    case
        when aqi_raw is null then null
        when round(aqi_raw) <= 50 then 'good'
        when round(aqi_raw) <= 100 then 'moderate'
        when round(aqi_raw) <= 150 then 'unhealthy_for_sensitive_groups'
        when round(aqi_raw) <= 200 then 'unhealthy'
        when round(aqi_raw) <= 300 then 'very_unhealthy'
        else 'hazardous'
    end as aqi_category
from indexed
