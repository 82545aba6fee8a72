{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        indexes=[
            {'columns': ['source_key', 'batch_id']},
            {'columns': ['invoice_date']},
        ],
        pre_hook="
            {% if is_incremental() %}
                delete from {{ this }}
                where source_key = any({{ transactions_source_keys_to_rebuild() }})
            {% endif %}
        ",
        post_hook=[
            "{{ ensure_unique_index(['transaction_id']) }}",
            "{{ ensure_unique_index(['source_row', 'source_key', 'source_sheet']) }}",
            "{{ ensure_index(['stock_code', 'invoice_no']) }}",
            "{{ ensure_index(['stock_code', 'customer_id']) }}",
        ],
    )
}}

{#-
    Incremental: only the source keys whose current load this table does not hold yet (or whose
    superseded load it still holds) are rebuilt, from all their current rows; the ledger says which
    (macros/transactions_source_keys_to_rebuild.sql), so a load that commits late is never skipped.
    The pre-hook deletes those keys' lines (also a key whose new load produced no line at all, every row
    set aside) and the run appends the new ones: dbt's delete+insert would delete them again with a pass
    over every line (its `in (select ...)` from the new rows is planned as a scan).
    The (stock_code, invoice_no) and (stock_code, customer_id) indexes are for product_totals, which
    probes them for the pairs its distinct counts have already counted; a post-hook (ensure_index) adds
    them to a table built before them, which dbt's `indexes` config would not.
-#}

with

source as (

    select * from {{ source('bronze', 'retail_transactions_current') }}

    {% if is_incremental() %}
    where batch_id = any({{ transactions_batches_to_rebuild() }})
    {% endif %}

),

complete_rows as (

    select * from source
    where {{ set_aside_reason() }} is null

),

numbered as (

    -- exact duplicates: rows of one file identical in the eight source columns as delivered
    -- (nulls equal) stand for one line; the lowest source_row represents them
    select
        *,
        row_number() over (identical_rows order by source_row, source_sheet) as duplicate_number,
        count(*) over identical_rows as source_rows

    from complete_rows

    window identical_rows as (
        partition by
            source_key,
            invoice_no,
            stock_code,
            description,
            quantity,
            invoice_date,
            unit_price,
            customer_id,
            country
    )

),

renamed as (

    select
        ---------- ids
        {{ source_row_id() }} as transaction_id,
        trim(invoice_no) as invoice_no,
        trim(stock_code) as stock_code,
        customer_id,

        ---------- text
        nullif(trim(description), '') as description,
        trim(country) as country,

        ---------- numerics
        quantity,
        unit_price,
        quantity * unit_price as line_amount,
        source_rows::int as source_rows,

        ---------- timestamps
        invoice_date::date as invoice_date,
        invoice_date as invoiced_at,

        ---------- lineage
        source_key,
        source_sheet,
        source_row,
        batch_id,
        loaded_at

    from numbered
    where duplicate_number = 1

),

flagged as (

    select
        *,
        invoice_no like 'C%' as is_cancellation,
        upper(stock_code) = any({{ sql_array(var('non_product_stock_codes'), 'text') }}) as is_non_product

    from renamed

),

final as (

    select
        transaction_id,
        invoice_no,
        invoice_date,
        invoiced_at,
        stock_code,
        description,
        quantity,
        unit_price,
        line_amount,
        customer_id,
        country,
        case
            when is_cancellation then 'cancellation'
            when is_non_product then 'non_product'
            when quantity > 0 then 'sale'
            else 'adjustment'
        end as line_type,
        is_cancellation,
        is_non_product,
        source_rows,
        source_key,
        source_sheet,
        source_row,
        batch_id,
        loaded_at

    from flagged

)

select * from final
