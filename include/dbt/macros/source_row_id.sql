{#-
    Surrogate key of a bronze source row, the same in silver.transactions and
    silver.transactions_set_aside: md5 of source_key, source_sheet (null as '') and source_row,
    joined with '|'.
-#}
{% macro source_row_id() -%}
    md5(source_key || '|' || coalesce(source_sheet, '') || '|' || source_row::text)
{%- endmacro %}
