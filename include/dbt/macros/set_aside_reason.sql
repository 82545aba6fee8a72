{#-
    Why silver sets a bronze row aside instead of turning it into a transaction line: the first
    required value that is missing, or null when the row is complete. The one definition of the rule:
    silver.transactions keeps the rows where it is null, silver.transactions_set_aside the others.
-#}
{% macro required_columns() -%}
    {{- return(var('required_columns')) -}}
{%- endmacro %}

{% macro set_aside_reason() -%}
    case
        {%- for column in required_columns() %}
        when {{ column }} is null then 'missing_{{ column }}'
        {%- endfor %}
    end
{%- endmacro %}

{#-
    The same rule as a plain condition, true exactly when set_aside_reason() is not null: the form
    PostgreSQL matches to the partial index of bronze.retail_transactions on these rows
    (include/sql/010_bronze.sql), so silver reads them without a scan of bronze.
-#}
{% macro is_set_aside() -%}
    ({% for column in required_columns() %}{{ column }} is null{{ ' or ' if not loop.last }}{% endfor %})
{%- endmacro %}
