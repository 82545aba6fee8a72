with

sale_lines as (

    select * from {{ ref('transactions') }}
    where line_type = 'sale'

),

countries as (

    select
        country,
        sum(line_amount) as revenue,
        count(distinct invoice_no) as orders,
        count(distinct customer_id) as customers,
        sum(quantity)::bigint as units,
        min(invoice_date) as first_sale_on,
        max(invoice_date) as last_sale_on

    from sale_lines
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
