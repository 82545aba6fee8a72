{#-
    Fails on every combination of the given columns that occurs more than once in the model: the
    grain test (dbt_utils.unique_combination_of_columns, written here because packages cannot be
    installed). Nulls count as equal values, as in group by.

    data_tests:
      - unique_combination_of_columns:
          arguments:
            combination_of_columns: [invoice_date, stock_code, country]
-#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

{%- set columns_csv = combination_of_columns | join(', ') %}

with

validation as (

    select
        {{ columns_csv }},
        count(*) as occurrences

    from {{ model }}
    group by {{ columns_csv }}
    having count(*) > 1

)

select * from validation

{% endtest %}
