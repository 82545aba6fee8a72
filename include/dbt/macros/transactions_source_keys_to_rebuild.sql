{#-
    Incremental rebuild set of silver.transactions, as a SQL text array: the source keys (files)
    that have a current bronze row loaded after the newest row already in silver.transactions
    (max(loaded_at) of the model's table). The model then takes ALL current rows of these keys, so
    a corrected file under a known key replaces that key's rows.

    Computed with run_query when the model is rendered, so the model and its pre-hook work on the
    same keys and the compiled SQL (target/compiled, target/run) shows which keys a run rebuilt.
-#}
{% macro transactions_source_keys_to_rebuild() -%}
    {%- set query -%}
        select distinct source_key
        from {{ source('bronze', 'retail_transactions_current') }}
        where loaded_at > {{ incremental_watermark('loaded_at') }}
        order by source_key
    {%- endset -%}
    {#- the query is rendered even when not executing, so that dbt records its ref() and source() -#}
    {%- if not execute -%}
        {{- return(sql_array([], 'text')) -}}
    {%- endif -%}
    {{- return(sql_array(run_query(query).columns[0].values(), 'text')) -}}
{%- endmacro %}
