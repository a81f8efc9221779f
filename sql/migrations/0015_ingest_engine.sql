-- Scale-out ingest: which engine encoded the slides (local or ray), how many slides a killed earlier run had
-- staged and this one resumed, and the samples left out with --skip-bad-slides (sample id -> error, JSON).
ALTER TABLE ingests ADD COLUMN engine VARCHAR;
ALTER TABLE ingests ADD COLUMN n_slides_resumed INTEGER;
ALTER TABLE ingests ADD COLUMN skipped JSON;
