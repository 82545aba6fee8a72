with

transactions as (

    -- read twice below, so PostgreSQL materializes it: only the columns used, not every line whole
    select
        stock_code,
        description,
        source_rows,
        invoiced_at,
        invoice_date,
        line_type,
        is_non_product

    from {{ ref('transactions') }}

),

description_counts as (

    select
        stock_code,
        description,
        sum(source_rows) as source_rows,
        max(invoiced_at) as last_invoiced_at

    from transactions
    where description is not null
    group by stock_code, description

),

ranked_descriptions as (

    -- the most frequent description (counting source rows), then the most recent, then alphabetical
    select
        stock_code,
        description,
        row_number() over (
            partition by stock_code
            order by source_rows desc, last_invoiced_at desc, description collate "C"
        ) as description_rank,
        count(*) over (partition by stock_code) as description_variants

    from description_counts

),

products as (

    select
        stock_code,
        bool_or(is_non_product) as is_non_product,
        min(invoice_date) filter (where line_type = 'sale') as first_sold_on,
        max(invoice_date) filter (where line_type = 'sale') as last_sold_on

    from transactions
    group by stock_code

),

final as (

    select
        products.stock_code,
        ranked_descriptions.description,
        coalesce(ranked_descriptions.description_variants, 0)::int as description_variants,
        products.is_non_product,
        products.first_sold_on,
        products.last_sold_on

    from products
    left join ranked_descriptions
        on
            products.stock_code = ranked_descriptions.stock_code
            and ranked_descriptions.description_rank = 1

)

select * from final
