{#-
    Incremental rebuild set of silver.fact_sales_daily, as a SQL date array: the invoice days whose
    sales may have changed since the newest line the fact has seen (max(max_loaded_at) of the
    model's table):
      1. the days of silver.transactions lines loaded after that watermark (new or corrected files);
      2. the days of the bronze rows of every load replaced by a load newer than the watermark,
         directly or through a load that was itself replaced before this model ran (superseded_by,
         followed recursively), so a corrected file that moves or drops a day rebuilds or clears it.
         New loads are read from bronze, not silver, so a correction whose rows were all set aside
         still clears the days of the load it replaced.

    Computed with run_query when the model is rendered, so the model and its pre-hook work on the
    same days, the planner sees real dates (index scans, not a guess), and the compiled SQL shows
    which days a run rebuilt.
-#}
{% macro sales_daily_days_to_rebuild() -%}
    {%- set watermark = incremental_watermark('max_loaded_at') -%}
    {%- set query -%}
        with recursive

        new_loads as (
            select distinct batch_id
            from {{ source('bronze', 'retail_transactions_current') }}
            where loaded_at > {{ watermark }}
        ),

        replaced_loads as (
            select ledger.batch_id
            from {{ source('bronze', 'load_ledger') }} as ledger
            where ledger.superseded_by in (select new_loads.batch_id from new_loads)

            union

            select ledger.batch_id
            from {{ source('bronze', 'load_ledger') }} as ledger
            inner join replaced_loads
                on ledger.superseded_by = replaced_loads.batch_id
        ),

        days as (
            select new_lines.invoice_date
            from {{ ref('transactions') }} as new_lines
            where new_lines.loaded_at > {{ watermark }}

            union

            select replaced_rows.invoice_date::date as invoice_date
            from {{ source('bronze', 'retail_transactions') }} as replaced_rows
            where
                replaced_rows.batch_id in (select replaced_loads.batch_id from replaced_loads)
                and replaced_rows.invoice_date is not null
        )

        select days.invoice_date::text as invoice_date
        from days
        order by days.invoice_date
    {%- endset -%}
    {#- the query is rendered even when not executing, so that dbt records its ref() and source() -#}
    {%- if not execute -%}
        {{- return(sql_array([], 'date')) -}}
    {%- endif -%}
    {{- return(sql_array(run_query(query).columns[0].values(), 'date')) -}}
{%- endmacro %}
