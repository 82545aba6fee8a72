with

products as (

    select * from {{ ref('dim_product') }}
    where not is_non_product

),

line_totals as (

    -- the running totals of every code (silver.product_totals): a product's lines are sales, cancellations
    -- and adjustments
    select
        stock_code,
        coalesce(units_sold, 0)::bigint as units_sold,
        coalesce(revenue, 0) as revenue,
        orders,
        customers,
        coalesce(units_returned, 0)::bigint as units_returned

    from {{ ref('product_totals') }}

),

final as (

    select
        products.stock_code,
        products.description,
        line_totals.units_sold,
        line_totals.revenue,
        line_totals.orders,
        line_totals.customers,
        line_totals.units_returned,
        round(line_totals.units_returned::numeric / nullif(line_totals.units_sold, 0), 6) as return_rate,
        dense_rank() over (order by line_totals.revenue desc) as revenue_rank

    from products
    inner join line_totals
        on products.stock_code = line_totals.stock_code

)

select * from final
