{{
    config(
        post_hook="{{ ensure_unique_index(['stock_code'], bytewise=false) }}",
    )
}}

{#-
    The unique index on stock_code is what the tests narrowed to new lines (relationships of transactions and the
    daily facts) probe: their planner cannot know how few lines are new, and without it may rescan this
    table once per line. In the column's own collation (bytewise=false), the one those joins compare in.
-#}

with

descriptions as (

    -- source rows and latest use of every description of every code, kept incrementally
    select * from {{ ref('product_descriptions') }}

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

    from descriptions

),

products as (

    -- one row per stock code of transactions, kept incrementally
    select * from {{ ref('product_totals') }}

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
