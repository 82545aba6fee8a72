{#-
    Incremental rebuild set of silver.transactions, found from the load ledger, not from time: a load
    that started before another file's load and transform but committed after it has an older
    loaded_at than silver's newest row, yet silver lacks it. The source keys (files) to rebuild are:
      1. keys whose current load (ledger status 'loaded', not superseded) silver does not hold, when
         that load has at least one complete row (a load whose rows are all set aside never makes a
         line, and is not rebuilt on every run);
      2. keys for which silver still holds lines of a load that a newer load of the key superseded,
         so a correction whose rows were all set aside still clears the key.
    The model then takes ALL current rows of these keys, so a corrected file replaces its key's rows.
    Each check is an index probe per ledger row ((source_key, batch_id) on this table; bronze's
    partial index on set-aside rows or its BRIN on batch_id), so the cost follows the number of files
    and the new rows, not the history.

    Computed with run_query when the model is rendered, so the model and its pre-hook work on the
    same keys and the compiled SQL (target/compiled, target/run) shows which keys a run rebuilt. A
    load that commits between the two queries is simply found by the next run.
-#}
{% macro transactions_rebuild_query() -%}
    with

    current_loads as (
        select ledger.batch_id, ledger.source_key, ledger.rows_loaded
        from {{ source('bronze', 'load_ledger') }} as ledger
        where
            ledger.status = 'loaded'
            and ledger.superseded_by is null
            and ledger.rows_loaded > 0
    ),

    missing_loads as (
        select current_loads.source_key
        from current_loads
        where
            not exists (
                select 1 from {{ this }} as held
                where
                    held.source_key = current_loads.source_key
                    and held.batch_id = current_loads.batch_id
            )
            -- the load has a complete row: it wrote more rows than it has set aside. Counting its
            -- set-aside rows reads bronze's partial index on them (include/sql/010_bronze.sql), or its
            -- BRIN index on batch_id, never all of bronze (an `exists` on a complete row was planned as
            -- a pass over every row of every file)
            and current_loads.rows_loaded > (
                select count(*) from {{ source('bronze', 'retail_transactions') }} as set_aside
                where
                    set_aside.batch_id = current_loads.batch_id
                    and {{ is_set_aside() }}
            )
    ),

    replaced_loads as (
        select ledger.source_key
        from {{ source('bronze', 'load_ledger') }} as ledger
        where
            ledger.status = 'loaded'
            and ledger.superseded_by is not null
            and exists (
                select 1 from {{ this }} as held
                where
                    held.source_key = ledger.source_key
                    and held.batch_id = ledger.batch_id
            )
    ),

    keys as (
        select missing_loads.source_key from missing_loads
        union
        select replaced_loads.source_key from replaced_loads
    )

    select
        keys.source_key,
        coalesce(
            array_agg(current_loads.batch_id::text) filter (where current_loads.batch_id is not null), '{}'
        )::text as batch_ids
    from keys
    left join current_loads
        on keys.source_key = current_loads.source_key
    group by keys.source_key
    order by keys.source_key
{%- endmacro %}

{#- The source keys to rebuild, as a SQL text array (see above). -#}
{% macro transactions_source_keys_to_rebuild() -%}
    {%- set query = transactions_rebuild_query() -%}
    {#- the query is rendered even when not executing, so that dbt records its ref() and source() -#}
    {%- if not execute or not is_incremental() -%}
        {{- return(sql_array([], 'text')) -}}
    {%- endif -%}
    {{- return(sql_array(run_query(query).columns[0].values(), 'text')) -}}
{%- endmacro %}

{#-
    The current loads of those keys, as a SQL uuid array: what the model reads from bronze, found
    through the BRIN index on batch_id instead of a scan of every row of every file.
-#}
{% macro transactions_batches_to_rebuild() -%}
    {%- set query = transactions_rebuild_query() -%}
    {%- if not execute or not is_incremental() -%}
        {{- return(sql_array([], 'uuid')) -}}
    {%- endif -%}
    {%- set batch_ids = [] -%}
    {%- for batch_array in run_query(query).columns[1].values() -%}
        {%- do batch_ids.extend(batch_array.strip('{}').split(',') | reject('equalto', '') | list) -%}
    {%- endfor -%}
    {{- return(sql_array(batch_ids, 'uuid')) -}}
{%- endmacro %}
