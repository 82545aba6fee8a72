{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='append_new_columns',
        indexes=[
            {'columns': ['batch_ids'], 'type': 'gin'},
        ],
        pre_hook="
            {% if is_incremental() %}
                alter table {{ this }} add column if not exists batch_ids uuid [];
                delete from {{ this }}
                where invoice_date = any({{ daily_days_to_rebuild(['cancellation', 'adjustment']) }})
            {% endif %}
        ",
        post_hook="{{ ensure_unique_index(['invoice_date', 'stock_code', 'country']) }}",
    )
}}

{#-
    Incremental like fact_sales_daily: only the days of loads no row was built from yet, and of rows
    built from loads since superseded, are rebuilt, from all their return lines; see
    macros/daily_days_to_rebuild.sql. The pre-hook deletes those days (also a day left without any
    return, a corrected file that drops it) and the run appends them: dbt's delete+insert would delete
    them again with a pass over the whole table. It also adds batch_ids
    to a table built before the model was incremental (dbt's on_schema_change cannot add an array
    column), whose first incremental run then rebuilds every day.
-#}

with

return_lines as (

    select * from {{ ref('transactions') }}
    where
        line_type in ('cancellation', 'adjustment')

        {% if is_incremental() %}
        and invoice_date = any({{ daily_days_to_rebuild(['cancellation', 'adjustment']) }})
        {% endif %}

),

final as (

    select
        invoice_date,
        stock_code,
        country,
        sum(-quantity)::bigint as units_returned,
        sum(-line_amount) as value_returned,
        count(*) as lines,
        count(distinct invoice_no) as invoices,
        array_agg(distinct batch_id order by batch_id) as batch_ids

    from return_lines
    group by invoice_date, stock_code, country

)

select * from final
