{#-
    Reconciles the warehouse end to end; every row returned is a discrepancy.
      - rows: every current bronze row is either represented in silver.transactions (a line's
        source_rows counts the identical source rows it stands for) or set aside, with a reason, in
        silver.transactions_set_aside. Nothing else may go missing.
      - revenue: gold monthly_sales_summary = silver fact_sales_daily = silver sale lines, in total
        and month by month, with exact numeric equality (nothing is rounded on the way).
-#}

with

bronze_rows as (

    select count(*) as row_count
    from {{ source('bronze', 'retail_transactions_current') }}

),

silver_rows as (

    select coalesce(sum(source_rows), 0) as row_count
    from {{ ref('transactions') }}

),

set_aside_rows as (

    select count(*) as row_count
    from {{ ref('transactions_set_aside') }}

),

silver_sale_lines as (

    select
        date_trunc('month', invoice_date)::date as month_start,
        line_amount

    from {{ ref('transactions') }}
    where line_type = 'sale'

),

silver_monthly as (

    select
        month_start,
        sum(line_amount) as revenue

    from silver_sale_lines
    group by month_start

),

fact_days as (

    select
        date_trunc('month', invoice_date)::date as month_start,
        revenue

    from {{ ref('fact_sales_daily') }}

),

fact_monthly as (

    select
        month_start,
        sum(revenue) as revenue

    from fact_days
    group by month_start

),

gold_monthly as (

    select
        month_start,
        revenue

    from {{ ref('monthly_sales_summary') }}

),

silver_total as (

    select coalesce(sum(revenue), 0) as revenue
    from silver_monthly

),

fact_total as (

    select coalesce(sum(revenue), 0) as revenue
    from fact_monthly

),

gold_total as (

    select coalesce(sum(revenue), 0) as revenue
    from gold_monthly

),

checks as (

    select
        'rows: bronze current = silver source_rows + set aside' as check_name,
        null::date as month_start,
        bronze_rows.row_count::numeric as expected,
        (silver_rows.row_count + set_aside_rows.row_count)::numeric as actual

    from bronze_rows
    cross join silver_rows
    cross join set_aside_rows

    union all

    select
        'total revenue: fact_sales_daily = silver sale lines' as check_name,
        null::date as month_start,
        silver_total.revenue as expected,
        fact_total.revenue as actual

    from silver_total
    cross join fact_total

    union all

    select
        'total revenue: gold monthly_sales_summary = silver sale lines' as check_name,
        null::date as month_start,
        silver_total.revenue as expected,
        gold_total.revenue as actual

    from silver_total
    cross join gold_total

    union all

    select
        'monthly revenue: gold monthly_sales_summary = silver sale lines' as check_name,
        coalesce(gold_monthly.month_start, silver_monthly.month_start) as month_start,
        coalesce(silver_monthly.revenue, 0) as expected,
        coalesce(gold_monthly.revenue, 0) as actual

    from gold_monthly
    full outer join silver_monthly
        on gold_monthly.month_start = silver_monthly.month_start

    union all

    select
        'monthly revenue: fact_sales_daily = silver sale lines' as check_name,
        coalesce(fact_monthly.month_start, silver_monthly.month_start) as month_start,
        coalesce(silver_monthly.revenue, 0) as expected,
        coalesce(fact_monthly.revenue, 0) as actual

    from fact_monthly
    full outer join silver_monthly
        on fact_monthly.month_start = silver_monthly.month_start

),

final as (

    select
        check_name,
        month_start,
        expected,
        actual,
        actual - expected as difference

    from checks
    where actual is distinct from expected

)

select * from final
