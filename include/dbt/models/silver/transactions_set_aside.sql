{#-
    A plain table, rebuilt on every run: it is a filter of the current bronze rows and is expected
    to stay (nearly) empty.
-#}

with

source as (

    select * from {{ source('bronze', 'retail_transactions_current') }}

),

set_aside as (

    select
        *,
        {{ set_aside_reason() }} as reason

    from source

),

final as (

    select
        {{ source_row_id() }} as transaction_id,
        reason,
        invoice_no,
        stock_code,
        description,
        quantity,
        invoice_date,
        unit_price,
        customer_id,
        country,
        source_key,
        source_sheet,
        source_row,
        batch_id,
        loaded_at

    from set_aside
    where {{ is_set_aside() }}

)

select * from final
