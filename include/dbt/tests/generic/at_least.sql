{#-
    Fails on every row whose column is below min_value (nulls pass: not_null tests those). Narrow it
    to the rows it is about with dbt's own `where` config:

    data_tests:
      - at_least:
          arguments:
            min_value: 0
          config:
            where: "line_type = 'sale'"
-#}
{% test at_least(model, column_name, min_value) %}

select {{ column_name }}
from {{ model }}
where {{ column_name }} < {{ min_value }}

{% endtest %}
