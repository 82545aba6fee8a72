{#-
    A list of values as a SQL array literal of the given type, e.g.
    sql_array(['a', "b'c"], 'text') -> array['a', 'b''c']::text[]. An empty list gives an empty
    array, so `column = any({{ sql_array(values, 'text') }})` is valid (and false) when there is
    nothing to match.
-#}
{% macro sql_array(values, data_type) -%}
    {%- set literals = [] -%}
    {%- for value in values -%}
        {%- do literals.append("'" ~ (value | string | replace("'", "''")) ~ "'") -%}
    {%- endfor -%}
    array[{{ literals | join(', ') }}]::{{ data_type }}[]
{%- endmacro %}
