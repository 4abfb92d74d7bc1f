-- The payments ledger as a product; rows are scoped by the paying department.
select
    payment_id,
    vendor_id,
    vendor_name,
    department,
    district,
    expense_category,
    amount,
    paid_at,
    cast(date_trunc('month', paid_at) as date) as paid_month,
    payment_method,
    invoice_number,
    account_number
from {{ ref('stg_finance__vendor_payments') }}
