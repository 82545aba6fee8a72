with

invoices as (

    -- the lines summed per invoice (silver.invoice_totals): the same sums, maximums and distinct counts
    select * from {{ ref('invoice_totals') }}

),

reference_day as (

    -- the day after the last invoice day in the data: "today" for recency
    select max(invoice_date) + 1 as reference_date

    from invoices

),

customer_sales as (

    select
        customer_id,
        max(invoice_date) as last_purchase_on,
        count(distinct invoice_no) as frequency,
        sum(amount) as monetary

    from invoices
    where
        line_type = 'sale'
        and customer_id is not null
    group by customer_id

),

measured as (

    select
        customer_sales.customer_id,
        customer_sales.last_purchase_on,
        reference_day.reference_date - customer_sales.last_purchase_on as recency_days,
        customer_sales.frequency,
        customer_sales.monetary

    from customer_sales
    cross join reference_day

),

scored as (

    -- quintiles, 5 = best; ties are split by the other two measures, then by customer_id, so the
    -- scores are deterministic
    select
        *,
        ntile(5) over (
            order by recency_days desc, frequency asc, monetary asc, customer_id asc
        ) as r_score,
        ntile(5) over (
            order by frequency asc, monetary asc, recency_days desc, customer_id asc
        ) as f_score,
        ntile(5) over (
            order by monetary asc, frequency asc, recency_days desc, customer_id asc
        ) as m_score

    from measured

),

segmented as (

    -- first matching rule wins; see customer_rfm.yml
    select
        *,
        case
            when r_score >= 4 and f_score >= 4 and m_score >= 4 then 'champions'
            when r_score >= 3 and f_score >= 4 then 'loyal'
            when r_score >= 4 and frequency = 1 then 'new'
            when r_score >= 3 and f_score in (2, 3) then 'potential_loyalist'
            when r_score <= 2 and f_score >= 3 then 'at_risk'
            when r_score <= 2 and f_score <= 2 then 'hibernating'
            else 'other'
        end as rfm_segment

    from scored

),

final as (

    select
        customer_id,
        last_purchase_on,
        recency_days,
        frequency,
        monetary,
        r_score,
        f_score,
        m_score,
        r_score::text || f_score::text || m_score::text as rfm_score,
        rfm_segment

    from segmented

)

select * from final
