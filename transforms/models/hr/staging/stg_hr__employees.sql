-- Staff register, typed.
with source as (
    select * from {{ source('raw_hr', 'employees') }}
)

select
    employee_id,
    trim(full_name) as full_name,
    lower(trim(email)) as email,
    nullif(trim(phone), '') as phone,
    lower(trim(department)) as department,
    trim(job_title) as job_title,
    manager_id,
    upper(trim(district)) as district,
    cast(salary as decimal(10, 2)) as salary,
    cast(hire_date as date) as hire_date,
    lower(trim(employment_status)) as employment_status
from source
