-- Public aggregate of the 311 queue: no row-level data, so it can be shared city-wide.
with requests as (
    select * from {{ ref('service_requests') }}
),

monthly as (
    select
        district,
        category,
        cast(date_trunc('month', opened_at) as date) as month,
        count(*) as requests_opened,
        count(*) filter (where status = 'closed') as requests_closed,
        count(*) filter (where is_open) as requests_open,
        count(*) filter (where response_hours <= 168) as requests_closed_within_7d,
        coalesce(sum(response_hours), 0) as total_response_hours,
        median(response_hours) as median_response_hours,
        quantile_cont(response_hours, 0.9) as p90_response_hours
    from requests
    group by 1, 2, 3
)

select
    district || '|' || category || '|' || strftime(month, '%Y-%m') as response_time_id,
    month,
    district,
    category,
    requests_opened,
    requests_closed,
    requests_open,
    requests_closed_within_7d,
    round(total_response_hours, 2) as total_response_hours,
    round(median_response_hours, 2) as median_response_hours,
    round(p90_response_hours, 2) as p90_response_hours,
    round(requests_closed_within_7d / nullif(requests_closed, 0), 4) as share_closed_within_7d
from monthly
