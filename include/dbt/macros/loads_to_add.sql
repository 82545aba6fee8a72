{#-
    What a model that keeps running totals (silver.product_totals, silver.product_descriptions) must add
    on this run, found from the load ledger and the loads each of its rows holds (batch_ids, GIN-indexed),
    as the daily facts find their days (macros/daily_days_to_rebuild.sql):
      - source_keys, batch_ids: the current loads (ledger status 'loaded', not superseded) no row holds
              yet, as lists (lines_of() makes the condition on silver.transactions' (source_key, batch_id)
              index);
      - held_batch_ids: the current loads some row holds, as a list: the lines already counted;
      - rebuild_all: some row holds a load that a newer load of its key has superseded. Running totals
              cannot take a file's old lines back out (a distinct count, a maximum), so the model is then
              rebuilt from every line: the pre-hook empties it and the model reads all of transactions.
              A correction is rare; a new file never causes it.
    A row marks only the loads whose lines it was built from, so a load that commits after transactions
    was built (no lines read yet) stays new until a later run reads its lines.

    Computed with run_query when the model is rendered, so the model and its pre-hook agree and the
    compiled SQL shows which loads a run added.
-#}
{% macro loads_to_add() -%}
    {%- set query -%}
        with

        current_loads as (
            select
                ledger.batch_id,
                ledger.source_key,
                exists (
                    select 1 from {{ this }} as held
                    where held.batch_ids @> array[ledger.batch_id]
                ) as is_held
            from {{ source('bronze', 'load_ledger') }} as ledger
            where
                ledger.status = 'loaded'
                and ledger.superseded_by is null
        ),

        replaced_loads as (
            select coalesce(array_agg(ledger.batch_id), '{}') as batch_ids
            from {{ source('bronze', 'load_ledger') }} as ledger
            where
                ledger.status = 'loaded'
                and ledger.superseded_by is not null
        )

        select
            current_loads.source_key,
            current_loads.batch_id::text as batch_id,
            current_loads.is_held,
            exists (
                select 1 from {{ this }} as held
                where held.batch_ids && (select replaced_loads.batch_ids from replaced_loads)
            ) as holds_a_replaced_load
        from current_loads
        order by current_loads.source_key, current_loads.batch_id
    {%- endset -%}
    {%- set loads = {'source_keys': [], 'batch_ids': [], 'held_batch_ids': [], 'rebuild_all': false} -%}
    {#- the query is rendered even when not executing, so that dbt records its ref() and source() -#}
    {%- if not execute or not is_incremental() -%}
        {{- return(loads) -}}
    {%- endif -%}
    {%- set table = run_query(query) -%}
    {%- for row in table.rows -%}
        {%- if row['is_held'] -%}
            {%- do loads.held_batch_ids.append(row['batch_id']) -%}
        {%- else -%}
            {%- do loads.source_keys.append(row['source_key']) -%}
            {%- do loads.batch_ids.append(row['batch_id']) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- do loads.update({'rebuild_all': true in table.columns['holds_a_replaced_load'].values()}) -%}
    {{- return(loads) -}}
{%- endmacro %}
