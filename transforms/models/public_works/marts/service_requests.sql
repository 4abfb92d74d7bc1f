-- The 311 queue as a product: one row per request, with its response time once closed.
with requests as (
    select * from {{ ref('stg_public_works__service_requests') }}
)

select
    request_id,
    opened_at,
    closed_at,
    category,
    status,
    priority,
    channel,
    district,
    address,
    latitude,
    longitude,
    requester_name,
    requester_email,
    requester_phone,
    -- Cancelled requests are closed administratively: their duration is not a response time.
    case
        when status = 'closed' then round(date_diff('second', opened_at, closed_at) / 3600.0, 2)
    end as response_hours,
    closed_at is null as is_open
from requests
