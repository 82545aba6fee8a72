{#-
    Why silver sets a bronze row aside instead of turning it into a transaction line: the first
    required value that is missing, or null when the row is complete. The one definition of the rule:
    silver.transactions keeps the rows where it is null, silver.transactions_set_aside the others.
-#}
{% macro set_aside_reason() -%}
    case
        when invoice_no is null then 'missing_invoice_no'
        when stock_code is null then 'missing_stock_code'
        when quantity is null then 'missing_quantity'
        when unit_price is null then 'missing_unit_price'
        when invoice_date is null then 'missing_invoice_date'
    end
{%- endmacro %}
