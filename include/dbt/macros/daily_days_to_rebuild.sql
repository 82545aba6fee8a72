{#-
    Incremental rebuild set of a daily fact built from the transaction lines of some line types
    (silver.fact_sales_daily: 'sale'; silver.fact_returns_daily: 'cancellation' and 'adjustment'), as
    a SQL date array, found from the load ledger and the loads each fact row was built from
    (batch_ids), not from time:
      1. the days of the lines of those types of every current load (ledger status 'loaded', not
         superseded) that no fact row was built from yet: new files, including a load that committed
         after a later-started load had already been transformed;
      2. the days of every fact row built from a load that a newer load of the same key superseded,
         so a corrected file that moves or drops a day rebuilds or clears it.
    Both are probes of the fact's GIN index on batch_ids per ledger row, and of silver.transactions'
    (source_key, batch_id) index per new load: the cost follows the number of files and the new lines.

    Computed with run_query when the model is rendered, so the model and its pre-hook work on the
    same days, the planner sees real dates (index scans, not a guess), and the compiled SQL shows
    which days a run rebuilt.

    A fact built before it had batch_ids (fact_returns_daily was once a plain table) rebuilds every day
    it holds and every day of the lines: the first run of the new code is a full rebuild, without a
    --full-refresh (the model's pre-hook adds the column, which dbt's on_schema_change cannot: it is an
    array).
-#}
{% macro daily_days_to_rebuild(line_types) -%}
    {%- set loads_query -%}
        -- an anti-join per ledger row: PostgreSQL probes the GIN index on batch_ids for each
        select
            ledger.source_key,
            ledger.batch_id::text as batch_id,
            false as is_replaced
        from {{ source('bronze', 'load_ledger') }} as ledger
        where
            ledger.status = 'loaded'
            and ledger.superseded_by is null
            and not exists (
                select 1 from {{ this }} as built
                where built.batch_ids @> array[ledger.batch_id]
            )

        union all

        select
            ledger.source_key,
            ledger.batch_id::text as batch_id,
            true as is_replaced
        from {{ source('bronze', 'load_ledger') }} as ledger
        where
            ledger.status = 'loaded'
            and ledger.superseded_by is not null
    {%- endset -%}
    {#- the queries are rendered even when not executing, so that dbt records their ref() and source() -#}
    {%- set unseen = {'source_keys': [], 'batch_ids': []} -%}
    {%- set replaced = [] -%}
    {%- if execute and is_incremental()
        and 'batch_ids' not in adapter.get_columns_in_relation(this) | map(attribute='name') | list -%}
        {%- set query -%}
            select built.invoice_date::text as invoice_date from {{ this }} as built
            union
            select lines.invoice_date::text as invoice_date from {{ ref('transactions') }} as lines
            where lines.line_type = any({{ sql_array(line_types, 'text') }})
            order by invoice_date
        {%- endset -%}
        {{- return(sql_array(run_query(query).columns[0].values(), 'date')) -}}
    {%- endif -%}
    {%- if execute and is_incremental() -%}
        {%- for load in run_query(loads_query).rows -%}
            {%- if load['is_replaced'] -%}
                {%- do replaced.append(load['batch_id']) -%}
            {%- else -%}
                {%- do unseen.source_keys.append(load['source_key']) -%}
                {%- do unseen.batch_ids.append(load['batch_id']) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {#-
        The new loads' lines as literal arrays, so that PostgreSQL probes transactions' (source_key,
        batch_id) index whatever its statistics know of the new load (a join with the loads was planned
        as a pass over every line).
    -#}
    {%- set query -%}
        select new_lines.invoice_date::text as invoice_date
        from {{ ref('transactions') }} as new_lines
        where
            {{ lines_of(unseen) }}
            and new_lines.line_type = any({{ sql_array(line_types, 'text') }})

        union

        select built.invoice_date::text as invoice_date
        from {{ this }} as built
        where built.batch_ids && {{ sql_array(replaced, 'uuid') }}

        order by invoice_date
    {%- endset -%}
    {%- if not execute or not is_incremental() -%}
        {{- return(sql_array([], 'date')) -}}
    {%- endif -%}
    {{- return(sql_array(run_query(query).columns[0].values(), 'date')) -}}
{%- endmacro %}
