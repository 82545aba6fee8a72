{{
    config(
        post_hook="{{ ensure_unique_index(['customer_id']) }}",
    )
}}

{#-
    The unique index on customer_id is what the tests narrowed to new lines (relationships of transactions and the
    daily facts) probe: their planner cannot know how few lines are new, and without it may rescan this
    table once per line.
-#}

with

invoices as (

    -- the lines summed per invoice (silver.invoice_totals): the same sums, extremes and distinct counts
    select * from {{ ref('invoice_totals') }}
    where customer_id is not null

),

country_counts as (

    select
        customer_id,
        country,
        sum(source_rows) as source_rows,
        max(last_invoiced_at) as last_invoiced_at

    from invoices
    group by customer_id, country

),

ranked_countries as (

    -- the most frequent country over all lines (counting source rows), then the most recent,
    -- then alphabetical
    select
        customer_id,
        country,
        row_number() over (
            partition by customer_id
            order by source_rows desc, last_invoiced_at desc, country collate "C"
        ) as country_rank,
        count(*) over (partition by customer_id) as countries

    from country_counts

),

customers as (

    select
        customer_id,
        min(first_invoiced_at) filter (where line_type = 'sale') as first_purchase_at,
        max(last_invoiced_at) filter (where line_type = 'sale') as last_purchase_at,
        count(distinct invoice_no) filter (where line_type = 'sale') as invoices

    from invoices
    group by customer_id

),

final as (

    select
        customers.customer_id,
        ranked_countries.country,
        customers.first_purchase_at,
        customers.last_purchase_at,
        customers.invoices,
        ranked_countries.countries > 1 as is_known_across_countries

    from customers
    inner join ranked_countries
        on
            customers.customer_id = ranked_countries.customer_id
            and ranked_countries.country_rank = 1

)

select * from final
