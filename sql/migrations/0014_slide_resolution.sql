-- Physical resolution: a slide's own µm per pixel at full resolution and where it came from
-- (metadata, given with --mpp or the manifest's mpp column, or the objective power); `mpp` stays the tiles' own.
ALTER TABLE slides ADD COLUMN source_mpp DOUBLE;
ALTER TABLE slides ADD COLUMN resolution_from VARCHAR;
