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

    Tests whose verdict also depends on a model built after transactions (a dimension the line must be
    in, a fact row, the reconciliation) cannot take invoice_totals as their witness: invoice_totals is
    built before them. They name __untested_lines__ (a model with source_key and batch_id) or
    __untested_rows__ (a model with a batch_ids array, GIN-indexed: the daily facts) instead, whose witness
    is silver.tested_loads, built only after every test of every model it depends on passed.

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
    {%- if '__untested_lines__' in where -%}
        {%- set where = where | replace('__untested_lines__', untested_lines_condition()) -%}
    {%- endif -%}
    {%- if '__untested_rows__' in where -%}
        {%- set where = where | replace('__untested_rows__', untested_rows_condition()) -%}
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
    {%- set loads = loads_not_witnessed('model.retail.invoice_totals') -%}
    {%- if loads is none -%}
        {{- return('true') -}}
    {%- endif -%}
    {{- return(lines_of(loads)) -}}
{%- endmacro %}

{#- SQL: the line's load is one silver.tested_loads does not hold. -#}
{% macro untested_lines_condition() -%}
    {%- set loads = loads_not_witnessed('model.retail.tested_loads') -%}
    {%- if loads is none -%}
        {{- return('true') -}}
    {%- endif -%}
    {{- return(lines_of(loads)) -}}
{%- endmacro %}

{#- SQL: the row (batch_ids) was built from a load silver.tested_loads does not hold. -#}
{% macro untested_rows_condition() -%}
    {%- set loads = loads_not_witnessed('model.retail.tested_loads') -%}
    {%- if loads is none -%}
        {{- return('true') -}}
    {%- endif -%}
    {{- return('batch_ids && ' ~ sql_array(loads.batch_ids, 'uuid')) -}}
{%- endmacro %}

{#- SQL: a line of one of these loads. A batch is the load of one key, so matching the keys and the batches
    as two lists matches the pairs. -#}
{% macro lines_of(loads) -%}
    {{- return(
        'source_key = any(' ~ sql_array(loads.source_keys, 'text') ~ ')'
        ~ ' and batch_id = any(' ~ sql_array(loads.batch_ids, 'uuid') ~ ')'
    ) -}}
{%- endmacro %}

{#-
    The current loads the witness model (a model with source_key and batch_id) does not hold, as lists
    {source_keys, batch_ids}; none when every load is to be checked: not executing, a --full-refresh, or
    no witness yet. Looked up when the test is compiled, as the incremental models' rebuild sets are, so
    the planner sees the real keys and batches and the compiled test shows which loads it checked.
-#}
{% macro loads_not_witnessed(witness_id) -%}
    {%- if not execute or flags.FULL_REFRESH -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- set witness = graph_relation(witness_id) -%}
    {%- if witness is none -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- set query -%}
        select ledger.source_key, ledger.batch_id::text as batch_id
        from {{ graph_relation('source.retail.bronze.load_ledger') }} as ledger
        where
            ledger.status = 'loaded'
            and ledger.superseded_by is null
            and not exists (
                select 1 from {{ witness }} as witnessed
                where
                    witnessed.source_key = ledger.source_key
                    and witnessed.batch_id = ledger.batch_id
            )
        order by ledger.source_key, ledger.batch_id
    {%- endset -%}
    {%- set loads = run_query(query) -%}
    {{- return({
        'source_keys': loads.columns[0].values() | list,
        'batch_ids': loads.columns[1].values() | list,
    }) -}}
{%- endmacro %}

{#-
    The months of the sale lines of these loads (the lists of loads_not_witnessed), as 'YYYY-MM-DD' month
    starts: the months the reconciliation checks when it is narrowed to the untested loads.
-#}
{% macro sale_months_of(loads) -%}
    {%- set query -%}
        select distinct date_trunc('month', lines.invoice_date)::date::text as month_start
        from {{ graph_relation('model.retail.transactions') }} as lines
        where
            lines.source_key = any({{ sql_array(loads.source_keys, 'text') }})
            and lines.batch_id = any({{ sql_array(loads.batch_ids, 'uuid') }})
            and lines.line_type = 'sale'
        order by month_start
    {%- endset -%}
    {{- return(run_query(query).columns[0].values() | list) -}}
{%- endmacro %}

{#-
    SQL: the day column falls in one of the months, as ranges, so that an index on the day serves it
    (false when there is no month).
-#}
{% macro in_months(column, months) -%}
    {%- set ranges = [] -%}
    {%- for month in months -%}
        {%- do ranges.append(
            '(' ~ column ~ " >= date '" ~ month ~ "' and " ~ column ~ " < date '" ~ month ~ "' + interval '1 month')"
        ) -%}
    {%- endfor -%}
    {{- '(' ~ (ranges | join(' or ') if ranges else 'false') ~ ')' -}}
{%- endmacro %}
