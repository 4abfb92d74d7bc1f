-- Payments, typed: money as an exact decimal, never a float, from here on.
with source as (
    select * from {{ source('raw_finance', 'vendor_payments') }}
)

select
    payment_id,
    vendor_id,
    trim(vendor_name) as vendor_name,
    lower(trim(department)) as department,
    upper(trim(district)) as district,
    lower(trim(expense_category)) as expense_category,
    cast(amount as decimal(12, 2)) as amount,
    cast(paid_at as timestamp) as paid_at,
    lower(trim(payment_method)) as payment_method,
    trim(invoice_number) as invoice_number,
    regexp_replace(account_number, '[^0-9]', '', 'g') as account_number
from source
