with

return_lines as (

    select * from {{ ref('transactions') }}
    where line_type in ('cancellation', 'adjustment')

),

final as (

    select
        invoice_date,
        stock_code,
        country,
        sum(-quantity)::bigint as units_returned,
        sum(-line_amount) as value_returned,
        count(*) as lines,
        count(distinct invoice_no) as invoices

    from return_lines
    group by invoice_date, stock_code, country

)

select * from final
