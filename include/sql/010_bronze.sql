-- Bronze: every source row as delivered, typed where the type is certain, with lineage.
-- Nothing here is cleaned or dropped; silver (dbt) does that.

create schema if not exists bronze;

comment on schema bronze is 'Source rows as delivered, with lineage; written only by retail_loader.';

-- One row per file seen, whatever became of it.
create table if not exists bronze.load_ledger (
    batch_id uuid primary key,
    source_key text not null,
    source_version text not null,
    source_etag text,
    source_bytes bigint,
    status text not null,
    rows_loaded bigint not null default 0,
    rows_rejected bigint not null default 0,
    sheets text [] not null default '{}',
    error text,
    duplicate_of uuid references bronze.load_ledger (batch_id),
    superseded_by uuid references bronze.load_ledger (batch_id),
    airflow_run_id text,
    started_at timestamptz not null,
    finished_at timestamptz not null default clock_timestamp(),
    read_seconds numeric(10, 3),
    load_seconds numeric(10, 3),
    constraint load_ledger_status_check check (status in ('loaded', 'duplicate', 'rejected', 'failed'))
);

-- Ledgers created before a status was added take the current list (include/retail/ingest/ledger.py, Status).
alter table bronze.load_ledger drop constraint if exists load_ledger_status_check;
alter table bronze.load_ledger add constraint load_ledger_status_check
    check (status in ('loaded', 'duplicate', 'rejected', 'failed'));

-- Columns added after the first release: ledgers created before them gain them here.
alter table bronze.load_ledger add column if not exists announced_at timestamptz;
alter table bronze.load_ledger add column if not exists announced_by text;
alter table bronze.load_ledger add column if not exists rows_fingerprint text;
alter table bronze.load_ledger add column if not exists rows_overlapping bigint;
alter table bronze.load_ledger add column if not exists source_s3_version_id text;

comment on column bronze.load_ledger.source_version is 'SHA-256 of the file''s bytes: the same content is loaded once.';
comment on column bronze.load_ledger.source_s3_version_id is 'The S3 VersionId of the upload read, loaded and filed (null where the bucket keeps no versions): a newer upload of the same key gets its own row.';
comment on column bronze.load_ledger.superseded_by is 'The later load of the same key that replaces this one in retail_transactions_current.';
comment on column bronze.load_ledger.announced_at is 'When the load summary and the bronze Asset update went out for this load; null: not yet (the next ingest run announces it).';
comment on column bronze.load_ledger.announced_by is 'The Airflow run that announced this load (a retry of that run announces it again).';
comment on column bronze.load_ledger.rows_fingerprint is 'Order- and format-independent fingerprint of the typed rows: the same rows re-exported are a duplicate.';
comment on column bronze.load_ledger.rows_overlapping is 'Rows of this load identical to a row of another current file (a partial re-export).';

-- The same content is loaded at most once, whatever key it arrives under.
create unique index if not exists load_ledger_one_load_per_version
    on bronze.load_ledger (source_version) where status = 'loaded';

create index if not exists load_ledger_source_key on bronze.load_ledger (source_key);

-- Finds a current load with the same rows (a re-export of a file in another format) at load time.
create index if not exists load_ledger_rows_fingerprint
    on bronze.load_ledger (rows_fingerprint) where status = 'loaded' and superseded_by is null;

create table if not exists bronze.retail_transactions (
    invoice_no text,
    stock_code text,
    description text,
    quantity bigint,
    invoice_date timestamp,
    unit_price numeric,
    customer_id bigint,
    country text,
    source_key text not null,
    source_version text not null,
    source_sheet text,
    source_row integer not null,
    batch_id uuid not null,
    loaded_at timestamptz not null default now()
);

-- A load sets its lineage for its own transaction (include/retail/ingest/bronze.py, copy_into_bronze), so COPY
-- writes the file's rows straight into this table: no staging table and no second pass over the rows.
-- Outside a load the settings are unset or empty, the default is null, and the row is refused.
alter table bronze.retail_transactions
    alter column source_key set default nullif(current_setting('retail.load_source_key', true), ''),
    alter column source_version set default nullif(current_setting('retail.load_source_version', true), ''),
    alter column batch_id set default nullif(current_setting('retail.load_batch_id', true), '')::uuid;

comment on table bronze.retail_transactions is 'Every typed source row of every loaded file; superseded loads stay.';
comment on column bronze.retail_transactions.source_row is 'Row number in the sheet or CSV as a spreadsheet shows it (header = 1).';
comment on column bronze.retail_transactions.unit_price is 'Exact decimal as written in the source: no rounding.';

-- BRIN: near-free to maintain during COPY, and lets incremental models find new rows by loaded_at.
create index if not exists retail_transactions_loaded_at
    on bronze.retail_transactions using brin (loaded_at);

-- BRIN on batch_id and invoice_date: a load's rows are written together (and a file's days mostly in
-- order), so block ranges are narrow; silver finds the rows of the batches it lacks, and a load finds
-- the rows of other files on its days, in time that follows the new data, not the history.
create index if not exists retail_transactions_batch_id
    on bronze.retail_transactions using brin (batch_id) with (autosummarize = on);
create index if not exists retail_transactions_invoice_date
    on bronze.retail_transactions using brin (invoice_date) with (autosummarize = on);

-- Rows whose values could not be typed, with the reason and the values as they came.
create table if not exists bronze.rejected_rows (
    batch_id uuid not null,
    source_key text not null,
    source_sheet text,
    source_row integer not null,
    reason text not null,
    raw_values jsonb not null,
    rejected_at timestamptz not null default now()
);

create index if not exists rejected_rows_batch_id on bronze.rejected_rows (batch_id);

-- What downstream reads: the rows of each key's latest load, superseded loads left out.
create or replace view bronze.retail_transactions_current as
select transactions.*
from bronze.retail_transactions as transactions
inner join bronze.load_ledger as ledger
    on transactions.batch_id = ledger.batch_id
where
    ledger.status = 'loaded'
    and ledger.superseded_by is null;

comment on view bronze.retail_transactions_current is 'Rows of every key''s latest load: what silver reads.';

grant usage on schema bronze to retail_loader;
grant select, insert on bronze.retail_transactions, bronze.rejected_rows to retail_loader;
grant select, insert, update (superseded_by, announced_at, announced_by, rows_fingerprint, rows_overlapping)
    on bronze.load_ledger to retail_loader;

-- The rows silver sets aside (include/dbt/macros/set_aside_reason.sql, is_set_aside): found by index, not by a
-- scan of bronze, when an incremental transform checks which loads still have a complete row.
-- Its predicate is the dbt var required_columns (include/dbt/dbt_project.yml); a test checks they agree. A new
-- predicate needs a new name: `create index if not exists` keeps an old index of the same name as it is.
drop index if exists bronze.retail_transactions_set_aside;
create index if not exists retail_transactions_set_aside_rows on bronze.retail_transactions (batch_id)
    where (
        invoice_no is null or stock_code is null or quantity is null or unit_price is null or invoice_date is null
        or country is null
    );
