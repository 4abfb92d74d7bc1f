-- Requests still open, with who to call back: the call-back team's work list.
with requests as (
    select * from {{ ref('service_requests') }}
)

select
    request_id,
    opened_at,
    category,
    status,
    priority,
    channel,
    district,
    requester_name,
    requester_email,
    requester_phone
from requests
where is_open
