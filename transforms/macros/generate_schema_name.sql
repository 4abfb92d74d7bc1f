{#- Use the department schema as-is (public_works.service_requests), not "<target>_<schema>":
    the warehouse has one target and department schemas are part of the product's address. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
