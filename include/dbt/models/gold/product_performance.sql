with

products as (

    select * from {{ ref('dim_product') }}
    where not is_non_product

),

product_lines as (

    -- every line of a product is a sale, a cancellation or an adjustment
    select * from {{ ref('transactions') }}
    where not is_non_product

),

line_totals as (

    select
        stock_code,
        coalesce(sum(quantity) filter (where line_type = 'sale'), 0)::bigint as units_sold,
        coalesce(sum(line_amount) filter (where line_type = 'sale'), 0) as revenue,
        count(distinct invoice_no) filter (where line_type = 'sale') as orders,
        count(distinct customer_id) filter (where line_type = 'sale') as customers,
        coalesce(sum(-quantity) filter (where line_type != 'sale'), 0)::bigint as units_returned

    from product_lines
    group by stock_code

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
