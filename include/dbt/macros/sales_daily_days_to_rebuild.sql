{#-
    Incremental rebuild set of silver.fact_sales_daily, as a SQL date array, found from the load
    ledger and the loads each fact row was built from (batch_ids), not from time:
      1. the days of the sale lines of every current load (ledger status 'loaded', not superseded)
         that no fact row was built from yet: new files, including a load that committed after a
         later-started load had already been transformed;
      2. the days of every fact row built from a load that a newer load of the same key superseded,
         so a corrected file that moves or drops a day rebuilds or clears it.
    Both are probes of this table's GIN index on batch_ids per ledger row, and of silver.transactions'
    (source_key, batch_id) index per new load: the cost follows the number of files and the new lines.

    Computed with run_query when the model is rendered, so the model and its pre-hook work on the
    same days, the planner sees real dates (index scans, not a guess), and the compiled SQL shows
    which days a run rebuilt.
-#}
{% macro sales_daily_days_to_rebuild() -%}
    {%- set query -%}
        with

        -- materialized: inlined, the planner may probe this table once per new line instead of once per load
        unseen_loads as materialized (
            select ledger.batch_id, ledger.source_key
            from {{ source('bronze', 'load_ledger') }} as ledger
            where
                ledger.status = 'loaded'
                and ledger.superseded_by is null
                and not exists (
                    select 1 from {{ this }} as built
                    where built.batch_ids @> array[ledger.batch_id]
                )
        ),

        replaced_loads as (
            select coalesce(array_agg(ledger.batch_id), '{}') as batch_ids
            from {{ source('bronze', 'load_ledger') }} as ledger
            where
                ledger.status = 'loaded'
                and ledger.superseded_by is not null
        ),

        days as (
            select new_lines.invoice_date
            from {{ ref('transactions') }} as new_lines
            inner join unseen_loads
                on
                    new_lines.source_key = unseen_loads.source_key
                    and new_lines.batch_id = unseen_loads.batch_id
            where new_lines.line_type = 'sale'

            union

            select built.invoice_date
            from {{ this }} as built
            where built.batch_ids && (select replaced_loads.batch_ids from replaced_loads)
        )

        select days.invoice_date::text as invoice_date
        from days
        order by days.invoice_date
    {%- endset -%}
    {#- the query is rendered even when not executing, so that dbt records its ref() and source() -#}
    {%- if not execute or not is_incremental() -%}
        {{- return(sql_array([], 'date')) -}}
    {%- endif -%}
    {{- return(sql_array(run_query(query).columns[0].values(), 'date')) -}}
{%- endmacro %}
