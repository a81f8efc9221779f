-- Named statements run by hquery.store. Each starts with "-- name: NAME".
-- Tables named staged_* are Arrow tables the store registers for the statement.

-- name: schema_version
SELECT coalesce(max(version), 0) FROM schema_version;

-- name: create_schema_version
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMP NOT NULL);

-- name: record_schema_version
INSERT INTO schema_version VALUES (?, now());

-- name: get_setting
SELECT value FROM settings WHERE key = ?;

-- name: put_setting
INSERT OR REPLACE INTO settings VALUES (?, ?);

-- name: lance_tables
SELECT name, kind, encoder, version, n_rows FROM lance_tables ORDER BY name;

-- name: put_lance_table
INSERT OR REPLACE INTO lance_tables VALUES (?, ?, ?, ?, ?, now());

-- name: insert_ingests
INSERT INTO ingests BY NAME SELECT * FROM staged_ingests;

-- name: upsert_cohort
INSERT INTO cohorts VALUES (?, ?, now()) ON CONFLICT DO NOTHING;

-- name: insert_samples
INSERT INTO samples BY NAME SELECT * FROM staged_samples;

-- name: insert_slides
INSERT INTO slides BY NAME SELECT * FROM staged_slides;

-- name: insert_tiles
INSERT INTO tiles BY NAME SELECT * FROM staged_tiles;

-- name: insert_genes
INSERT INTO genes BY NAME SELECT * FROM staged_genes;

-- name: gene_universe
SELECT symbol FROM genes ORDER BY position;

-- name: insert_gene_aliases
INSERT OR REPLACE INTO gene_aliases BY NAME SELECT * FROM staged_gene_aliases;

-- name: gene_aliases
SELECT alias, symbol FROM gene_aliases;

-- name: insert_gene_sets
INSERT OR REPLACE INTO gene_sets BY NAME SELECT * FROM staged_gene_sets;

-- name: gene_sets
SELECT name, collection, source, len(members) AS n_members, description
FROM gene_sets
WHERE ? IS NULL OR collection = ?
ORDER BY collection, name;

-- name: gene_set
SELECT name, collection, source, description, members, members_hash FROM gene_sets WHERE name = ?;

-- name: insert_encoders
INSERT INTO encoders BY NAME SELECT * FROM staged_encoders;

-- name: encoder
SELECT version, kind, spec, params, dim, artifact_path FROM encoders WHERE version = ?;

-- name: sample_hashes
SELECT sample_id, content_hash, ingest_id, has_slide, has_expression FROM samples;

-- name: samples_with_expression
SELECT sample_id FROM samples WHERE has_expression ORDER BY sample_id;

-- name: slide_tiles
SELECT tile_index, x, y FROM tiles WHERE sample_id = ? ORDER BY tile_index;

-- name: cohort_summary
SELECT cohort, n_samples AS samples, n_patients AS patients, n_pairs AS pairs, n_reference AS reference,
       n_query AS query, n_cancer_types AS cancer_types
FROM cohort_summary ORDER BY cohort;

-- name: store_counts
SELECT
    (SELECT count(*) FROM samples)    AS samples,
    (SELECT count(*) FROM slides)     AS slides,
    (SELECT count(*) FROM tiles)      AS tiles,
    (SELECT count(*) FROM genes)      AS genes,
    (SELECT count(*) FROM gene_sets)  AS gene_sets,
    (SELECT count(*) FROM ingests)    AS ingests;

-- name: encoders
SELECT version, kind, spec, dim, created_at FROM encoders ORDER BY created_at;

-- name: ingest_history
SELECT ingest_id, cohort, n_samples_new, n_samples_same, n_tiles, finished_at
FROM ingests ORDER BY finished_at;

-- name: pairs
SELECT sample_id, patient_id FROM pairs ORDER BY sample_id;

-- name: sample_patients
SELECT sample_id, patient_id FROM samples;

-- name: sample_metadata
SELECT sample_id, patient_id, cohort, cancer_type, clinical FROM samples;

-- name: library_samples_where
-- {predicate} is the user's SQL predicate on samples, run on a read-only connection.
SELECT sample_id FROM samples WHERE has_expression AND ({predicate}) ORDER BY sample_id;

-- name: insert_models
INSERT OR REPLACE INTO models BY NAME SELECT * FROM staged_models;

-- name: delete_model_metrics
DELETE FROM model_metrics WHERE model_version = ?;

-- name: insert_model_metrics
INSERT INTO model_metrics BY NAME SELECT * FROM staged_model_metrics;

-- name: model
SELECT version, name, kind, params, data_snapshot, seed, metrics, artifact_path, created_at, retired_at
FROM models WHERE version = ?;

-- name: models
SELECT version, name, kind, seed, created_at FROM models ORDER BY created_at;

-- name: model_metrics_summary
SELECT method, direction, metric, mean, sd, n_folds
FROM model_metrics_summary WHERE model_version = ?
ORDER BY direction, method, metric;

-- name: index_version
SELECT model_version, path, retired_at FROM index_versions WHERE version = ?;

-- name: index_versions
SELECT version, model_version, kind, n_vectors, metrics, created_at FROM index_versions ORDER BY created_at;

-- name: insert_index_versions
INSERT OR REPLACE INTO index_versions BY NAME SELECT * FROM staged_index_versions;

-- name: gene_set_names
SELECT name, collection FROM gene_sets ORDER BY name;

-- name: gene_sets_in
SELECT name, collection, members, members_hash FROM gene_sets WHERE list_contains(?, name) ORDER BY name;

-- name: gene_sets_of_collection
SELECT name, collection, members, members_hash FROM gene_sets WHERE collection = ? ORDER BY name;

-- name: library_scores
SELECT members_hash, sample_id, es FROM library_scores
WHERE library_version = ? AND list_contains(?, members_hash);

-- name: drop_stale_library_scores
DELETE FROM library_scores WHERE library_version <> ?;

-- name: insert_library_scores
INSERT OR REPLACE INTO library_scores BY NAME SELECT * FROM staged_library_scores;

-- name: latest_eval_results
-- route_params: what a prompt needs to answer by this method as it was evaluated (JSON; NULL for most).
SELECT l.gene_set, l.method, l.r2, l.r2_calibrated, l.route, l.eval_id, l.line_slope, l.line_intercept,
       json_extract_string(e.params, '$.routes.' || l.method) AS route_params
FROM prompt_eval_latest l JOIN prompt_eval_runs e USING (eval_id)
WHERE list_contains(?, l.gene_set) ORDER BY l.gene_set, l.method;

-- name: slide_samples
SELECT sample_id, patient_id, cohort, cancer_type, has_expression FROM samples WHERE has_slide ORDER BY sample_id;

-- name: profiled_samples
SELECT sample_id, patient_id, cohort, cancer_type, has_expression FROM samples WHERE has_expression
ORDER BY sample_id;

-- name: insert_prompt_runs
INSERT INTO prompt_runs BY NAME SELECT * FROM staged_prompt_runs;

-- name: insert_prompt_gene_sets
INSERT INTO prompt_gene_sets BY NAME SELECT * FROM staged_prompt_gene_sets;

-- name: insert_prompt_scores
INSERT INTO prompt_scores BY NAME SELECT * FROM staged_prompt_scores;

-- name: slide_samples_where
-- {predicate} is the user's SQL predicate on samples, run on a read-only connection.
SELECT sample_id FROM samples WHERE has_slide AND ({predicate}) ORDER BY sample_id;

-- name: insert_prompt_eval_runs
INSERT INTO prompt_eval_runs BY NAME SELECT * FROM staged_prompt_eval_runs;

-- name: insert_prompt_eval_results
INSERT INTO prompt_eval_results BY NAME SELECT * FROM staged_prompt_eval_results;

-- name: insert_prompt_eval_calibration
INSERT INTO prompt_eval_calibration BY NAME SELECT * FROM staged_prompt_eval_calibration;

-- name: slide_source
SELECT source_path, source_kind, tile_size, width, height FROM slides WHERE sample_id = ?;

-- name: slide_reopen
SELECT source_path, source_kind, tile_size, magnification, source_mpp, content_hash, n_tiles FROM slides
WHERE sample_id = ?;

-- name: paired_slide_resolutions
-- The resolutions (µm per pixel, to 2 decimals) the paired slides' tiles were cut at; NULL: unknown.
SELECT round(s.mpp, 2) AS mpp, count(*) AS n_slides, min(s.sample_id) AS example
FROM slides s JOIN pairs p USING (sample_id) GROUP BY ALL ORDER BY n_slides DESC, mpp;

-- name: insert_refresh_runs
INSERT OR REPLACE INTO refresh_runs BY NAME SELECT * FROM staged_refresh_runs;

-- name: mark_interrupted_refreshes
-- A refresh killed after its index went into service (before it wrote so) says that it had.
UPDATE refresh_runs SET status = 'interrupted', reason = CASE
    WHEN EXISTS (SELECT 1 FROM index_versions i JOIN settings s ON s.key = 'current_index' AND s.value = i.version
                 WHERE i.created_at >= refresh_runs.started_at)
    THEN 'the process stopped after its new index went into service, before it recorded so'
    ELSE 'the process stopped before it finished' END
WHERE status = 'running';

-- name: refresh_runs
SELECT refresh_id, started_at, status, reason, service_model, candidate_model, service_recall_at_10,
       candidate_recall_at_10 FROM refresh_runs ORDER BY started_at;

-- name: tile_positions
SELECT t.sample_id, t.tile_index, t.x, t.y, s.tile_size
FROM tiles t JOIN slides s USING (sample_id)
WHERE list_contains(?, t.sample_id);

-- name: artifact_referenced
-- How many committed rows refer to an artifact folder (relative to artifacts/): 0 for an orphan of a killed commit.
SELECT count(*) AS n FROM live_artifacts WHERE path = ?;

-- name: live_artifacts
-- Every artifact folder (relative to artifacts/) a committed, unretired row refers to.
SELECT path FROM live_artifacts WHERE path IS NOT NULL;

-- name: gc_models
-- Every model, newest first per name, and whether a pointer or an encoder's spec (a PEKA-adapted backbone)
-- names it.
SELECT m.version, m.name, m.artifact_path, m.data_snapshot, m.created_at, m.retired_at,
       row_number() OVER (PARTITION BY m.name ORDER BY m.created_at DESC, m.version DESC) AS recency,
       lag(m.created_at) OVER (PARTITION BY m.name ORDER BY m.created_at DESC, m.version DESC) AS superseded_at,
       (EXISTS (SELECT 1 FROM settings s WHERE s.value = m.version)
        OR EXISTS (SELECT 1 FROM encoders e WHERE contains(e.spec, m.version)
                                              OR contains(CAST(e.params AS VARCHAR), m.version))) AS pinned
FROM models m ORDER BY m.name, recency;

-- name: gc_indexes
-- Every index version, newest first, and whether a pointer names it.
SELECT i.version, i.model_version, i.path, i.created_at, i.retired_at,
       row_number() OVER (ORDER BY i.created_at DESC, i.version DESC) AS recency,
       lag(i.created_at) OVER (ORDER BY i.created_at DESC, i.version DESC) AS superseded_at,
       EXISTS (SELECT 1 FROM settings s WHERE s.value = i.version) AS pinned
FROM index_versions i ORDER BY recency;

-- name: retire_model
UPDATE models SET retired_at = ? WHERE version = ?;

-- name: retire_index
UPDATE index_versions SET retired_at = ? WHERE version = ?;

-- name: delete_lance_table
DELETE FROM lance_tables WHERE name = ?;

-- name: latest_scores
-- The newest slide-level run of a gene set from one source: its score per sample.
SELECT sample_id, score FROM prompt_results_all
WHERE run_id = (SELECT run_id FROM prompt_results_all WHERE gene_set = ? AND source = ? AND level = 'slide'
                ORDER BY created_at DESC LIMIT 1)
  AND gene_set = ?;

-- name: insert_association_runs
INSERT INTO association_runs BY NAME SELECT * FROM staged_association_runs;

-- name: insert_association_results
INSERT INTO association_results BY NAME SELECT * FROM staged_association_results;

-- name: insert_survival_runs
INSERT INTO survival_runs BY NAME SELECT * FROM staged_survival_runs;

-- name: insert_survival_results
INSERT INTO survival_results BY NAME SELECT * FROM staged_survival_results;

-- name: insert_archetype_runs
INSERT INTO archetype_runs BY NAME SELECT * FROM staged_archetype_runs;

-- name: insert_archetype_classes
INSERT INTO archetype_classes BY NAME SELECT * FROM staged_archetype_classes;

-- name: insert_space_maps
INSERT INTO space_maps BY NAME SELECT * FROM staged_space_maps;

-- name: insert_space_coordinates
INSERT INTO space_coordinates BY NAME SELECT * FROM staged_space_coordinates;

-- name: insert_adaptation_runs
INSERT INTO adaptation_runs BY NAME SELECT * FROM staged_adaptation_runs;

-- name: insert_adaptation_results
INSERT INTO adaptation_results BY NAME SELECT * FROM staged_adaptation_results;

-- name: insert_transfer_runs
INSERT INTO transfer_runs BY NAME SELECT * FROM staged_transfer_runs;

-- name: insert_transfer_results
INSERT INTO transfer_results BY NAME SELECT * FROM staged_transfer_results;

-- name: slide_footprint
-- A slide's tile side in level-0 pixels is tile_size * mpp / source_mpp (tiles cut at a coarser resolution).
SELECT source_kind, tile_size, mpp, source_mpp, width, height FROM slides WHERE sample_id = ?;

-- name: prompt_run
SELECT run_id, created_at, method, aggregate, level, model_version, index_version, library_version, k, tau,
       n_samples, params FROM prompt_runs WHERE run_id = ?;

-- name: last_prompt_run
SELECT run_id FROM prompt_runs WHERE method <> 'measured' ORDER BY created_at DESC LIMIT 1;

-- name: prompt_run_scores
SELECT sample_id, tile_index, patient_id, cohort, cancer_type, gene_set, score, percentile, dispersion, effective_k,
       route, trust
FROM prompt_results_all WHERE run_id = ? ORDER BY gene_set, sample_id, tile_index;

-- name: prompt_run_gene_sets
SELECT gene_set, n_members, n_found, missing FROM prompt_gene_sets WHERE run_id = ? ORDER BY gene_set;

-- name: viewer_slides
SELECT s.sample_id, s.patient_id, s.cohort, s.cancer_type, sl.source_kind, sl.n_tiles, sl.width, sl.height
FROM samples s JOIN slides sl USING (sample_id) ORDER BY s.sample_id;

-- name: viewer_slide
SELECT s.sample_id, s.patient_id, s.cohort, s.cancer_type, sl.source_kind, sl.n_tiles, sl.width, sl.height,
       sl.source_path, sl.content_hash
FROM samples s JOIN slides sl USING (sample_id) WHERE s.sample_id = ?;

-- name: viewer_slide_scores
-- The newest slide-level run that scored gene set ? (named twice): each slide's score, dispersion and trust.
SELECT sample_id, score, dispersion, trust, run_id FROM prompt_results_all
WHERE gene_set = ? AND level = 'slide' AND source = 'predicted'
  AND created_at = (SELECT max(created_at) FROM prompt_results_all
                    WHERE gene_set = ? AND level = 'slide' AND source = 'predicted');

-- name: viewer_tile_scores
-- The newest tile-level run that scored slide ? for gene set ? (both named twice): each tile's place and score.
SELECT r.tile_index, t.x, t.y, r.score, r.dispersion, r.effective_k, r.trust, r.run_id
FROM prompt_results_all r JOIN tiles t USING (sample_id, tile_index)
WHERE r.sample_id = ? AND r.gene_set = ? AND r.level = 'tile'
  AND r.created_at = (SELECT max(created_at) FROM prompt_results_all
                      WHERE sample_id = ? AND gene_set = ? AND level = 'tile')
ORDER BY r.tile_index;
