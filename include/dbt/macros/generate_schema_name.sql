{#- Models land in the schema they name (silver, gold), not in "<target schema>_<name>". -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ (custom_schema_name or target.schema) | trim }}
{%- endmacro %}
