{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['stock_code', 'description'],
        on_schema_change='append_new_columns',
        indexes=[
            {'columns': ['batch_ids'], 'type': 'gin'},
        ],
        pre_hook="
            {% if is_incremental() and loads_to_add().rebuild_all %}
                delete from {{ this }}
            {% endif %}
        ",
        post_hook="{{ ensure_unique_index(['stock_code', 'description'], bytewise=false) }}",
    )
}}

{#-
    Running counts of every description of every stock code, what dim_product ranks its description by:
    a run reads only the lines of the loads this table does not hold yet (macros/loads_to_add.sql) and adds
    their source rows and latest invoice time to the rows they touch (delete+insert on the pair). A
    correction (a held load superseded) rebuilds the table from every line.
    Its unique index is in the columns' own collation (bytewise=false), the one the merge with the held
    rows joins in, so that a misjudged count of new rows cannot make PostgreSQL rescan the table per row.
-#}

{%- set loads = loads_to_add() %}
{%- set adding = is_incremental() and not loads.rebuild_all %}
{%- set of_new_loads = lines_of(loads) if adding else 'true' %}

with

new_lines as (

    select * from {{ ref('transactions') }}
    where
        description is not null
        and {{ of_new_loads }}

),

added as (

    select
        stock_code,
        description,
        sum(source_rows) as source_rows,
        max(invoiced_at) as last_invoiced_at,
        array_agg(distinct batch_id order by batch_id) as batch_ids

    from new_lines
    group by stock_code, description

),

{% if adding %}

final as (

    select
        added.stock_code,
        added.description,
        coalesce(held.source_rows, 0) + added.source_rows as source_rows,
        greatest(held.last_invoiced_at, added.last_invoiced_at) as last_invoiced_at,
        (
            select array_agg(distinct loads.batch_id order by loads.batch_id) as batch_ids
            from unnest(coalesce(held.batch_ids, '{}') || added.batch_ids) as loads (batch_id)
        ) as batch_ids

    from added
    left join {{ this }} as held
        on
            added.stock_code = held.stock_code
            and added.description = held.description

)

{% else %}

final as (

    select * from added

)

{% endif %}

select * from final
