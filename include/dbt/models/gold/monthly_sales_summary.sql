with

months as (

    select distinct month_start from {{ ref('dim_date') }}

),

invoices as (

    -- the lines summed per invoice (silver.invoice_totals): the same sums and distinct counts
    select
        *,
        date_trunc('month', invoice_date)::date as month_start

    from {{ ref('invoice_totals') }}
    where line_type in ('sale', 'cancellation')

),

monthly as (

    select
        month_start,
        sum(amount) filter (where line_type = 'sale') as revenue,
        count(distinct invoice_no) filter (where line_type = 'sale') as orders,
        count(distinct invoice_no) filter (where line_type = 'cancellation') as cancelled_orders,
        count(distinct customer_id) filter (where line_type = 'sale') as customers,
        sum(units) filter (where line_type = 'sale') as units

    from invoices
    group by month_start

),

final as (

    select
        months.month_start,
        coalesce(monthly.revenue, 0) as revenue,
        coalesce(monthly.orders, 0) as orders,
        coalesce(monthly.cancelled_orders, 0) as cancelled_orders,
        coalesce(monthly.customers, 0) as customers,
        coalesce(monthly.units, 0)::bigint as units,
        round(
            coalesce(
                monthly.cancelled_orders::numeric / nullif(monthly.orders + monthly.cancelled_orders, 0),
                0
            ),
            6
        ) as cancellation_rate,
        round(monthly.revenue / nullif(monthly.orders, 0), 6) as average_order_value

    from months
    left join monthly
        on months.month_start = monthly.month_start

)

select * from final
