-- Typed and tidied 311 requests; the only place that reads the raw table.
with source as (
    select * from {{ source('raw_public_works', 'service_requests') }}
),

renamed as (
    select
        request_id,
        cast(opened_at as timestamp) as opened_at,
        cast(closed_at as timestamp) as closed_at,
        lower(trim(category)) as category,
        lower(trim(status)) as status,
        lower(trim(priority)) as priority,
        lower(trim(channel)) as channel,
        upper(trim(district)) as district,
        nullif(trim(address), '') as address,
        cast(latitude as double) as latitude,
        cast(longitude as double) as longitude,
        nullif(trim(requester_name), '') as requester_name,
        lower(nullif(trim(requester_email), '')) as requester_email,
        nullif(trim(requester_phone), '') as requester_phone
    from source
)

select * from renamed
