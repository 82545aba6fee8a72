{#-
    Fails on every combination of the given columns that occurs more than once in the model: the
    grain test (dbt_utils.unique_combination_of_columns, written here because packages cannot be
    installed). Nulls count as equal values, as in group by. When a unique index with nulls not
    distinct holds exactly these columns (macros/catalog_guarantees.sql, ensure_unique_index),
    PostgreSQL already refuses a duplicate, so the scan is skipped.

    data_tests:
      - unique_combination_of_columns:
          arguments:
            combination_of_columns: [invoice_date, stock_code, country]
-#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

{%- set columns_csv = combination_of_columns | join(', ') %}
{#- a test narrowed by `where` reads a subquery, which no index describes: it scans -#}
{%- set guaranteed = 'false' if model is string
    else unique_index_exists(model, combination_of_columns, nulls_equal=true) %}

with

validation as (

    select
        {{ columns_csv }},
        count(*) as occurrences

    from {{ model }}
    where not {{ guaranteed }}
    group by {{ columns_csv }}
    having count(*) > 1

)

select * from validation

{% endtest %}
