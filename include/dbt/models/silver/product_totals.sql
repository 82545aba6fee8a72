{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='stock_code',
        on_schema_change='append_new_columns',
        indexes=[
            {'columns': ['batch_ids'], 'type': 'gin'},
        ],
        pre_hook="
            {% if is_incremental() and loads_to_add().rebuild_all %}
                delete from {{ this }}
            {% endif %}
        ",
        post_hook="{{ ensure_unique_index(['stock_code'], bytewise=false) }}",
    )
}}

{#-
    Running totals of every stock code, kept so that dim_product and product_performance never read the
    history: a run reads only the lines of the loads this table does not hold yet (macros/loads_to_add.sql)
    and adds them to the rows of the stock codes they touch (delete+insert on stock_code). Sums, minimums
    and maximums add up as they are; a distinct count adds only the (stock code, invoice) and (stock code,
    customer) pairs no line already counted has, found by probing transactions' indexes on those pairs
    among the lines of the loads held. A correction (a held load superseded) rebuilds the table from every
    line.
    Its unique index is in the columns' own collation (bytewise=false), the one the merge with the held
    rows joins in, so that a misjudged count of new rows cannot make PostgreSQL rescan the table per row.
-#}

{%- set loads = loads_to_add() %}
{%- set adding = is_incremental() and not loads.rebuild_all %}
{%- set of_new_loads = lines_of(loads) if adding else 'true' %}

with

new_lines as (

    select * from {{ ref('transactions') }}
    where {{ of_new_loads }}

),

flagged as (

    -- whether a new sale line's (stock code, invoice) and (stock code, customer) pairs are not counted
    -- yet: no sale line of a held load has them. lateral ... limit 1 makes each a probe of transactions'
    -- index on the pair (any one line will do), whatever PostgreSQL guesses of the number of new lines (its
    -- statistics may not know the new load yet): never a pass over every line
    select
        new_lines.stock_code,
        new_lines.invoice_no,
        new_lines.customer_id,
        new_lines.line_type,
        new_lines.is_non_product,
        new_lines.quantity,
        new_lines.line_amount,
        new_lines.invoice_date,
        new_lines.batch_id,
        counted_invoice.found is null as is_new_invoice,
        counted_customer.found is null as is_new_customer

    from new_lines
    left join lateral (
        select 1 as found from {{ ref('transactions') }} as counted
        where
            {{ 'true' if adding else 'false' }}
            and new_lines.line_type = 'sale'
            and counted.stock_code = new_lines.stock_code
            and counted.invoice_no = new_lines.invoice_no
            and counted.line_type = 'sale'
            and counted.batch_id = any({{ sql_array(loads.held_batch_ids, 'uuid') }})
        limit 1  -- noqa: AM09
    ) as counted_invoice on true
    left join lateral (
        select 1 as found from {{ ref('transactions') }} as counted
        where
            {{ 'true' if adding else 'false' }}
            and new_lines.line_type = 'sale'
            and counted.stock_code = new_lines.stock_code
            and counted.customer_id = new_lines.customer_id
            and counted.line_type = 'sale'
            and counted.batch_id = any({{ sql_array(loads.held_batch_ids, 'uuid') }})
        limit 1  -- noqa: AM09
    ) as counted_customer on true

),

added as (

    select
        stock_code,
        bool_or(is_non_product) as is_non_product,
        min(invoice_date) filter (where line_type = 'sale') as first_sold_on,
        max(invoice_date) filter (where line_type = 'sale') as last_sold_on,
        sum(quantity) filter (where line_type = 'sale') as units_sold,
        sum(line_amount) filter (where line_type = 'sale') as revenue,
        sum(-quantity) filter (where line_type in ('cancellation', 'adjustment')) as units_returned,
        count(distinct invoice_no) filter (where line_type = 'sale' and is_new_invoice) as orders,
        count(distinct customer_id) filter (where line_type = 'sale' and is_new_customer) as customers,
        array_agg(distinct batch_id order by batch_id) as batch_ids

    from flagged
    group by stock_code

),

{% if adding %}

final as (

    -- least and greatest skip nulls; a sum is null while the code has no line of its kind
    select
        added.stock_code,
        added.is_non_product or coalesce(held.is_non_product, false) as is_non_product,
        least(held.first_sold_on, added.first_sold_on) as first_sold_on,
        greatest(held.last_sold_on, added.last_sold_on) as last_sold_on,
        coalesce(held.units_sold + added.units_sold, held.units_sold, added.units_sold) as units_sold,
        coalesce(held.revenue + added.revenue, held.revenue, added.revenue) as revenue,
        coalesce(
            held.units_returned + added.units_returned, held.units_returned, added.units_returned
        ) as units_returned,
        coalesce(held.orders, 0) + added.orders as orders,
        coalesce(held.customers, 0) + added.customers as customers,
        (
            select array_agg(distinct loads.batch_id order by loads.batch_id) as batch_ids
            from unnest(coalesce(held.batch_ids, '{}') || added.batch_ids) as loads (batch_id)
        ) as batch_ids

    from added
    left join {{ this }} as held
        on added.stock_code = held.stock_code

)

{% else %}

final as (

    select * from added

)

{% endif %}

select * from final
