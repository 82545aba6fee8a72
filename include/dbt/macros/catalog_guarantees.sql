{#-
    Guarantees PostgreSQL keeps for the models, so that the data tests that check them need not scan:
    - a model's columns with a `not_null` test are declared NOT NULL after it is built (post-hook
      declare_not_null, project-wide): one pass over the table for all its columns, then PostgreSQL
      refuses any null an incremental run would insert;
    - a model's grain may be held by a unique index (ensure_unique_index), which PostgreSQL checks
      row by row as it is built and as incremental runs insert.
    The project's `not_null`, `unique` and `unique_combination_of_columns` tests read the catalog first:
    when the guarantee is in place they skip their scan (a one-time filter, evaluated before the scan
    starts); when it is not (dropped, a model built without it) they scan as before. A null or a
    duplicate therefore still fails the build, only earlier: the model's post-hook or insert names it.
-#}

{#- The columns of this model that a `not_null` data test (without a `where`) covers. -#}
{% macro not_null_tested_columns(node) -%}
    {%- set columns = [] -%}
    {%- for test in graph.nodes.values()
        if test.resource_type == 'test'
        and (test.test_metadata or {}).get('name') == 'not_null'
        and node.unique_id in test.depends_on.nodes
        and not test.config.get('where') -%}
        {%- do columns.append(test.column_name) -%}
    {%- endfor -%}
    {{- return(columns | unique | sort) -}}
{%- endmacro %}

{#- Post-hook: declare NOT NULL every column a not_null test covers, in one ALTER (one scan). -#}
{% macro declare_not_null() -%}
    {%- if execute and model.resource_type == 'model' -%}
        {%- set columns = not_null_tested_columns(model) -%}
        {%- if columns -%}
            alter table {{ this }}
            {%- for column in columns %}
                alter column {{ adapter.quote(column) }} set not null{{ ',' if not loop.last }}
            {%- endfor %}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{#-
    Post-hook: a unique index on the columns, created unless one already holds them (an incremental
    model keeps its own). nulls not distinct: like group by, it counts nulls as equal values. Text
    columns are indexed bytewise (collate "C"), which builds about twice as fast and means the same
    uniqueness: in a deterministic collation two texts are equal only when their bytes are. Put the
    most selective column first: a build compares mostly on it. bytewise=false indexes them in the
    column's own collation instead, for an index that joins on the column (a dimension that tests probe)
    must use: PostgreSQL uses an index only for comparisons in its collation.
-#}
{% macro ensure_unique_index(columns, bytewise=true) -%}
    {%- set is_text = {} -%}
    {%- for column in adapter.get_columns_in_relation(this) -%}
        {%- do is_text.update({column.name: column.is_string()}) -%}
    {%- endfor -%}
    do $ensure_unique_index$
    begin
        if not {{ unique_index_exists(this, columns, nulls_equal=true) }} then
            create unique index on {{ this }} (
                {%- for column in columns -%}
                    {{ column }}{{ ' collate "C"' if bytewise and is_text.get(column) }}{{ ', ' if not loop.last }}
                {%- endfor -%}
            ) nulls not distinct;
        end if;
    end
    $ensure_unique_index$
{%- endmacro %}

{#- The relation's oid, or null when it does not exist. -#}
{% macro relation_oid(relation) -%}
    to_regclass('{{ relation.schema }}.{{ relation.identifier }}')
{%- endmacro %}

{#- SQL: the relation declares the column NOT NULL. -#}
{% macro column_declared_not_null(relation, column_name) -%}
    exists (
        select 1 from pg_catalog.pg_attribute as attribute
        where
            attribute.attrelid = {{ relation_oid(relation) }}
            and attribute.attname = '{{ column_name }}'
            and attribute.attnotnull
    )
{%- endmacro %}

{#-
    SQL: a valid unique index of the relation holds exactly these columns (no expression, no predicate,
    no included column). With nulls_equal, it must also count nulls as equal, unless every one of the
    columns is NOT NULL.
-#}
{% macro unique_index_exists(relation, columns, nulls_equal=false) -%}
    exists (
        select 1 from pg_catalog.pg_index as index_
        where
            index_.indrelid = {{ relation_oid(relation) }}
            and index_.indisunique
            and index_.indisvalid
            and index_.indpred is null
            and index_.indexprs is null
            and index_.indnatts = {{ columns | length }}
            and (
                select array_agg(attribute.attname::text order by attribute.attname::text)
                from pg_catalog.pg_attribute as attribute
                where attribute.attrelid = index_.indrelid and attribute.attnum = any(index_.indkey)
            ) = {{ sql_array(columns | sort, 'text') }}
            {%- if nulls_equal %}
            and (
                index_.indnullsnotdistinct
                or not exists (
                    select 1 from pg_catalog.pg_attribute as attribute
                    where
                        attribute.attrelid = index_.indrelid
                        and attribute.attnum = any(index_.indkey)
                        and not attribute.attnotnull
                )
            )
            {%- endif %}
    )
{%- endmacro %}

{#- dbt's not_null test, which skips its scan when the table declares the column NOT NULL. -#}
{% macro postgres__test_not_null(model, column_name) %}

{% set column_list = '*' if should_store_failures() else column_name %}

select {{ column_list }}
from {{ model }}
where
    {{ column_name }} is null
    {%- if model is not string %}
    and not {{ column_declared_not_null(model, column_name) }}
    {%- endif %}

{% endmacro %}

{#- dbt's unique test, which skips its scan when a unique index holds the column. -#}
{% macro postgres__test_unique(model, column_name) %}

select
    {{ column_name }} as unique_field,
    count(*) as n_records

from {{ model }}
where
    {{ column_name }} is not null
    {%- if model is not string %}
    and not {{ unique_index_exists(model, [column_name]) }}
    {%- endif %}
group by {{ column_name }}
having count(*) > 1

{% endmacro %}

{#-
    Post-hook: a plain index on the columns (in this order, in their own collation), created unless a
    valid index of the relation already starts with exactly them. dbt's `indexes` config creates its
    indexes only when it creates the table, so an incremental model that gains an index keeps building
    without it until a --full-refresh: this adds it to the table as it stands.
-#}
{% macro ensure_index(columns) -%}
    do $ensure_index$
    begin
        if not exists (
            select 1 from pg_catalog.pg_index as index_
            where
                index_.indrelid = {{ relation_oid(this) }}
                and index_.indisvalid
                and index_.indpred is null
                and index_.indexprs is null
                and (
                    select array_agg(attribute.attname::text order by key.position)
                    from unnest((index_.indkey::int2 [])[0:{{ columns | length - 1 }}]) with ordinality as key (attnum, position)
                    inner join pg_catalog.pg_attribute as attribute
                        on attribute.attrelid = index_.indrelid and attribute.attnum = key.attnum
                ) = {{ sql_array(columns, 'text') }}
        ) then
            create index on {{ this }} ({{ columns | join(', ') }});
        end if;
    end
    $ensure_index$
{%- endmacro %}

{#-
    Post-hook (project-wide): statistics for an incremental model right after it is built whole. A
    table dbt creates from a query has none until autovacuum gets to it, and the incremental runs that
    follow would be planned blind (passes over the whole table where an index probe would do). A
    sample of rows, not a pass: cheap beside the build it follows. Incremental runs add too few rows to
    matter, and their queries name the new loads literally.
-#}
{% macro analyze_after_full_build() -%}
    {%- if execute and model.resource_type == 'model' and config.get('materialized') == 'incremental'
        and not is_incremental() -%}
        analyze {{ this }}
    {%- endif -%}
{%- endmacro %}
