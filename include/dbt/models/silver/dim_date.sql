{{
    config(
        post_hook="{{ ensure_unique_index(['date_day']) }}",
    )
}}

{#-
    The unique index on date_day is what the tests narrowed to new lines (relationships of transactions and the
    daily facts) probe: their planner cannot know how few lines are new, and without it may rescan this
    table once per line.
-#}

with

invoices as (

    -- the lines summed per invoice (silver.invoice_totals): the same days
    select * from {{ ref('invoice_totals') }}

),

bounds as (

    select
        min(invoice_date) as first_day,
        max(invoice_date) as last_day

    from invoices

),

days as (

    select series.series_day::date as date_day

    from bounds
    cross join generate_series(
        bounds.first_day::timestamp,
        bounds.last_day::timestamp,
        interval '1 day'
    ) as series (series_day)

),

sale_days as (

    select distinct invoice_date

    from invoices
    where line_type = 'sale'

),

final as (

    select
        days.date_day,
        extract(year from days.date_day)::int as year,
        extract(quarter from days.date_day)::int as quarter,
        extract(month from days.date_day)::int as month,
        date_trunc('month', days.date_day)::date as month_start,
        extract(isoyear from days.date_day)::int as iso_year,
        extract(week from days.date_day)::int as iso_week,
        extract(isodow from days.date_day)::int as day_of_week,
        to_char(days.date_day, 'FMDay') as day_name,
        extract(isodow from days.date_day) in (6, 7) as is_weekend,
        sale_days.invoice_date is not null as has_sales

    from days
    left join sale_days
        on days.date_day = sale_days.invoice_date

)

select * from final
