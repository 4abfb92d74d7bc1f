-- Cross-department product: a monthly scorecard per district, built ONLY from other departments'
-- public marts (refs across groups are allowed to public models, refused to private staging).
with response as (
    select
        district,
        month,
        cast(sum(requests_opened) as bigint) as requests_opened,
        cast(sum(requests_open) as bigint) as requests_open,
        cast(sum(requests_closed) as bigint) as requests_closed,
        cast(sum(requests_closed_within_7d) as bigint) as requests_closed_within_7d,
        sum(total_response_hours) as total_response_hours
    from {{ ref('response_times') }}
    group by 1, 2
),

-- Pinned to traffic_counts v1 (`vehicle_count`): an unpinned ref would follow latest_version and
-- break this model on the next breaking version; move the pin when migrating to `vehicles`.
traffic as (
    select
        district,
        cast(date_trunc('month', counted_at) as date) as month,
        avg(vehicle_count) as avg_hourly_vehicles
    from {{ ref('traffic_counts', v=1) }}
    group by 1, 2
),

air as (
    select
        district,
        cast(date_trunc('month', measured_at) as date) as month,
        avg(pm25) as avg_pm25,
        count(aqi) as aqi_hours,
        count(*) filter (where aqi > 100) as unhealthy_hours
    from {{ ref('air_quality') }}
    group by 1, 2
),

joined as (
    select
        response.district,
        response.month,
        response.requests_opened,
        response.requests_open,
        response.total_response_hours / nullif(response.requests_closed, 0) as mean_response_hours,
        response.requests_closed_within_7d / nullif(response.requests_closed, 0) as share_closed_within_7d,
        traffic.avg_hourly_vehicles,
        air.avg_pm25,
        air.unhealthy_hours / nullif(air.aqi_hours, 0) as unhealthy_air_share
    from response
    left join traffic using (district, month)
    left join air using (district, month)
)

select
    district || '|' || strftime(month, '%Y-%m') as scorecard_id,
    district,
    month,
    requests_opened,
    requests_open,
    round(mean_response_hours, 2) as mean_response_hours,
    round(share_closed_within_7d, 4) as share_closed_within_7d,
    round(avg_hourly_vehicles, 1) as avg_hourly_vehicles,
    round(avg_pm25, 2) as avg_pm25,
    round(unhealthy_air_share, 4) as unhealthy_air_share,
    -- 0-100: 60% service (closed within a week), 40% clean air; months without sensor data
    -- count as clean air rather than penalising districts for a sensor gap.
    round(100 * (0.6 * coalesce(share_closed_within_7d, 0) + 0.4 * (1 - coalesce(unhealthy_air_share, 0))), 1)
        as score
from joined
