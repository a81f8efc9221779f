-- A version `hquery gc` removed: its row stays (runs, results and refreshes refer to it), its files are gone.
ALTER TABLE models ADD COLUMN retired_at TIMESTAMP;
ALTER TABLE index_versions ADD COLUMN retired_at TIMESTAMP;
