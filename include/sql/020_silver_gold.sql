-- Silver and gold belong to the transformer role: dbt (connected as a login granted that role)
-- creates, replaces and drops its models there, and may only read bronze.

create schema if not exists silver authorization retail_transformer;
create schema if not exists gold authorization retail_transformer;

comment on schema silver is 'Clean, conformed, deduplicated transactions and dimensions (dbt).';
comment on schema gold is 'Business marts (dbt): monthly summary, countries, products, customers.';

grant usage on schema bronze to retail_transformer;
grant select on all tables in schema bronze to retail_transformer;

-- Gold for readers, including the tables dbt creates later (default privileges of the owner role).
grant usage on schema gold to retail_reader;
grant select on all tables in schema gold to retail_reader;
alter default privileges for role retail_transformer in schema gold grant select on tables to retail_reader;
