-- The staff register as a product. Salaries and contact details stay in the table; the contract
-- marks them for masking, which the gateway applies per caller.
select
    employee_id,
    full_name,
    email,
    phone,
    department,
    job_title,
    manager_id,
    district,
    salary,
    hire_date,
    employment_status
from {{ ref('stg_hr__employees') }}
