{#-
    The highest value of `column_name` in the model's own table when the run starts, as a SQL
    timestamptz literal, for incremental filters such as
    `where loaded_at > {{ incremental_watermark('loaded_at') }}`.

    - On a full build (first run, --full-refresh) or an empty table it is '-infinity': all is new.
    - It is read with run_query while the SQL is rendered, that is before the model's pre-hook
      runs: a pre-hook that deletes rows of the table cannot move it, and the pre-hook and the
      model see the same value.
    - It travels as text (`::text`) and is cast back, so the timestamp round-trips exactly.
-#}
{% macro incremental_watermark(column_name) -%}
    {%- if execute and is_incremental() -%}
        {%- set query -%}
            select max({{ column_name }})::text from {{ this }}
        {%- endset -%}
        {%- set watermark = run_query(query).columns[0].values()[0] -%}
        {%- if watermark is not none -%}
            {{- return("'" ~ watermark ~ "'::timestamptz") -}}
        {%- endif -%}
    {%- endif -%}
    {{- return("'-infinity'::timestamptz") -}}
{%- endmacro %}
