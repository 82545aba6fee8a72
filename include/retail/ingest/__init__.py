"""Ingest one object into bronze, in the order an upload meets them:

- ``tasks``: the Airflow tasks (``load_files``: one ``ingest_file`` per key, then ``announce_loads``);
- ``load``: fetch, fingerprint, read, load and file one object; ``scratch`` its private folder, ``filing``
  where it goes (processed/, quarantine/, failed/), ``faults`` whose fault an error is;
- ``workbook_limits`` and ``sandboxed_read``: cheap checks, then reading in a child process under limits;
  ``reader`` (``xlsx_reader``, ``csv_reader``, ``sheets``): the file's cells as text columns;
- ``contract``: the columns, their names and types, what a row may be;
- ``bronze``: COPY into bronze and the ledger row in one transaction; ``ledger``: every read and write of the
  load ledger; ``announce``: the load summary over SNS.
"""
