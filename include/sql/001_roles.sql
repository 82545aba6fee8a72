-- Group roles of the warehouse, one per job (DESIGN.md section 5: least privilege).
-- The roles carry privileges only; who may log in as them is the environment's business:
-- the embedded stack gives them LOGIN and a generated password, on RDS grant them to login users.
do $$
begin
    if not exists (select from pg_catalog.pg_roles where rolname = 'retail_loader') then
        create role retail_loader nologin;
    end if;
    if not exists (select from pg_catalog.pg_roles where rolname = 'retail_transformer') then
        create role retail_transformer nologin;
    end if;
    if not exists (select from pg_catalog.pg_roles where rolname = 'retail_reader') then
        create role retail_reader nologin;
    end if;
end
$$;

comment on role retail_loader is 'Loads files into bronze and records them in the ledger; nothing else.';
comment on role retail_transformer is 'dbt: reads bronze, owns and builds silver and gold.';
comment on role retail_reader is 'Reads gold: dashboards and analysts.';

-- The owner applying this DDL creates silver and gold for retail_transformer (020_silver_gold.sql), which
-- PostgreSQL allows only to a member of that role. The owner is no superuser (on RDS neither is the master
-- user), and from PostgreSQL 16 on creating a role with CREATEROLE no longer makes its creator a member.
do $$
begin
    if not pg_has_role(current_user, 'retail_transformer', 'member') then
        execute format('grant retail_transformer to %I', current_user);
    end if;
end
$$;
