with

sale_invoices as (

    -- the sale lines summed per invoice (silver.invoice_totals): the same sums and distinct counts
    select * from {{ ref('invoice_totals') }}
    where line_type = 'sale'

),

countries as (

    select
        country,
        sum(amount) as revenue,
        count(distinct invoice_no) as orders,
        count(distinct customer_id) as customers,
        sum(units)::bigint as units,
        min(invoice_date) as first_sale_on,
        max(invoice_date) as last_sale_on

    from sale_invoices
    group by country

),

final as (

    select
        country,
        revenue,
        orders,
        customers,
        units,
        round(revenue / nullif(sum(revenue) over (), 0), 6) as revenue_share,
        first_sale_on,
        last_sale_on

    from countries

)

select * from final
