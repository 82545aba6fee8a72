{#-
    Tests of silver.transactions whose verdict on a line can never change once given (the line's own
    values, or its load in the ledger, whose rows are never deleted) check only the lines no passing
    build has verified yet. Their `where` config names the placeholder __unverified_lines__:

        config:
          where: "__unverified_lines__"

    A line is verified once silver.invoice_totals holds its load (source_key, batch_id): that model is
    built from transactions only after every test of transactions passed in the same build, so lines a
    failed build left behind are tested again by the next one, until they pass or their file is
    corrected. The lines are found from the ledger's current loads, through transactions' (source_key,
    batch_id) index: the cost follows the new files, not the history. Without invoice_totals yet (a first
    build), or in a --full-refresh (which rebuilds every line, perhaps by changed code), every line is
    tested.

    dbt documents overriding get_where_subquery as the way to compute a test's `where` at run time.
-#}
{% macro postgres__get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if not where -%}
        {{- return(relation) -}}
    {%- endif -%}
    {%- if '__unverified_lines__' in where -%}
        {%- set where = where | replace('__unverified_lines__', unverified_lines_condition()) -%}
    {%- endif -%}
    {%- set filtered -%}
        (select * from {{ relation }} where {{ where }}) dbt_subquery
    {%- endset -%}
    {{- return(filtered) -}}
{%- endmacro %}

{#- A relation of the project's graph (a model or a source) by unique id, or none when it is not built. -#}
{% macro graph_relation(unique_id) -%}
    {%- set node = graph.nodes.get(unique_id) or graph.sources.get(unique_id) -%}
    {%- set identifier = node.get('alias') or node.get('identifier') or node.name -%}
    {{- return(adapter.get_relation(database=node.database, schema=node.schema, identifier=identifier)) -}}
{%- endmacro %}

{#-
    SQL: the line's load is one silver.invoice_totals does not hold (see above). The loads are looked up
    when the test is compiled, as the incremental models' rebuild sets are, so that the planner sees the
    real keys and batches (transactions' (source_key, batch_id) index; nothing to read when there is
    none) and the compiled test shows which loads it checked. A batch is the load of one key, so
    matching the keys and the batches as two lists matches the pairs.
-#}
{% macro unverified_lines_condition() -%}
    {%- if not execute or flags.FULL_REFRESH -%}
        {{- return('true') -}}
    {%- endif -%}
    {%- set verified = graph_relation('model.retail.invoice_totals') -%}
    {%- if verified is none -%}
        {{- return('true') -}}
    {%- endif -%}
    {%- set query -%}
        select ledger.source_key, ledger.batch_id::text as batch_id
        from {{ graph_relation('source.retail.bronze.load_ledger') }} as ledger
        where
            ledger.status = 'loaded'
            and ledger.superseded_by is null
            and not exists (
                select 1 from {{ verified }} as verified
                where
                    verified.source_key = ledger.source_key
                    and verified.batch_id = ledger.batch_id
            )
        order by ledger.source_key, ledger.batch_id
    {%- endset -%}
    {%- set loads = run_query(query) -%}
    {{- return(
        'source_key = any(' ~ sql_array(loads.columns[0].values(), 'text') ~ ')'
        ~ ' and batch_id = any(' ~ sql_array(loads.columns[1].values(), 'uuid') ~ ')'
    ) -}}
{%- endmacro %}
