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
                delete from {{ this }}
                where invoice_date = any({{ daily_days_to_rebuild(['sale']) }})
            {% endif %}
        ",
        post_hook="{{ ensure_unique_index(['invoice_date', 'stock_code', 'country']) }}",
    )
}}

{#-
    Incremental: only the days of loads no row was built from yet, and of rows built from loads since
    superseded, are rebuilt, from all their sale lines; see macros/daily_days_to_rebuild.sql.
    The pre-hook deletes those days (also a day left without any sale, a corrected file that drops it)
    and the run appends them: dbt's delete+insert would delete them again with a pass over the whole
    table.
-#}

with

sale_lines as (

    select * from {{ ref('transactions') }}
    where
        line_type = 'sale'

        {% if is_incremental() %}
        and invoice_date = any({{ daily_days_to_rebuild(['sale']) }})
        {% endif %}

),

final as (

    -- grouped and counted bytewise (collate "C": the same groups and distinct counts, as equality is
    -- bytewise in a deterministic collation, sorted faster), the columns handed back in the default one
    select
        invoice_date,
        (stock_code collate "C") collate "default" as stock_code,
        (country collate "C") collate "default" as country,
        sum(quantity)::bigint as units,
        sum(line_amount) as revenue,
        count(distinct invoice_no collate "C") as invoices,
        count(distinct customer_id) as customers,
        count(*) as lines,
        sum(source_rows) as sale_lines_source_rows,
        max(loaded_at) as max_loaded_at,
        array_agg(distinct batch_id order by batch_id) as batch_ids

    from sale_lines
    group by invoice_date, stock_code collate "C", country collate "C"

)

select * from final
