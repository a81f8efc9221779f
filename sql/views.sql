-- Views over the catalog, re-created after every migration: a changed view ships with a new migration.

CREATE OR REPLACE VIEW sample_roles AS
SELECT
    s.*,
    CASE
        WHEN s.has_slide AND s.has_expression THEN 'pair'
        WHEN s.has_expression THEN 'reference'
        ELSE 'query'
    END AS role
FROM samples s;

CREATE OR REPLACE VIEW pairs AS
SELECT * FROM sample_roles WHERE role = 'pair';

CREATE OR REPLACE VIEW reference_library AS
SELECT * FROM sample_roles WHERE has_expression;

CREATE OR REPLACE VIEW query_slides AS
SELECT * FROM sample_roles WHERE has_slide;

CREATE OR REPLACE VIEW cohort_summary AS
SELECT
    cohort,
    count(*)                                    AS n_samples,
    count(DISTINCT patient_id)                  AS n_patients,
    count(*) FILTER (WHERE role = 'pair')       AS n_pairs,
    count(*) FILTER (WHERE role = 'reference')  AS n_reference,
    count(*) FILTER (WHERE role = 'query')      AS n_query,
    count(DISTINCT cancer_type)                 AS n_cancer_types
FROM sample_roles
GROUP BY cohort;

CREATE OR REPLACE VIEW gene_set_members AS
SELECT name AS gene_set, collection, unnest(members) AS symbol
FROM gene_sets;

-- Every prompt score with its run and the sample's metadata; `source` tells scores predicted from a slide from
-- those of a sample's measured expression (`hquery score`).
CREATE OR REPLACE VIEW prompt_results_all AS
SELECT
    r.run_id, p.created_at, r.gene_set,
    CASE WHEN p.method = 'measured' THEN 'measured' ELSE 'predicted' END AS source,
    p.method, p.aggregate, p.level, p.k, p.tau,
    p.model_version, p.index_version,
    r.sample_id, r.tile_index, s.patient_id, s.cohort, s.cancer_type, s.has_expression, s.clinical,
    r.score, r.percentile, r.type_z, r.dispersion, r.effective_k, r.route, r.trust
FROM prompt_scores r
JOIN prompt_runs p USING (run_id)
JOIN samples s USING (sample_id);

-- The newest run's scores for each gene set, level, method and aggregate: what
-- `hquery sql "select cancer_type, avg(score) from prompt_results ..."` should see.
CREATE OR REPLACE VIEW prompt_results AS
SELECT * EXCLUDE (newest) FROM (
    SELECT *, max(created_at) OVER (PARTITION BY gene_set, level, method, aggregate) AS newest
    FROM prompt_results_all
) WHERE created_at = newest;

-- One row per scored sample (and tile) of the newest runs, gene sets as a map:
-- `scores['HALLMARK_G2M_CHECKPOINT']`.
CREATE OR REPLACE VIEW prompt_results_wide AS
SELECT sample_id, tile_index, source, level, method, aggregate, patient_id, cohort, cancer_type, has_expression,
       clinical, map_from_entries(list((gene_set, score) ORDER BY gene_set)) AS scores
FROM prompt_results
GROUP BY ALL;

CREATE OR REPLACE VIEW model_metrics_summary AS
SELECT
    model_version, method, direction, metric,
    avg(value)         AS mean,
    stddev_samp(value) AS sd,
    count(*)           AS n_folds
FROM model_metrics
GROUP BY ALL;

-- Each gene set's rows (every method) from the newest evaluation that held it, careless
-- (library_leak) evaluations excluded: what `prompt --method auto` chooses routes and
-- reports trust from.
CREATE OR REPLACE VIEW prompt_eval_latest AS
SELECT * EXCLUDE (newest) FROM (
    SELECT r.*, e.created_at, e.collection,
           max(e.created_at) OVER (PARTITION BY r.gene_set) AS newest
    FROM prompt_eval_results r
    JOIN prompt_eval_runs e USING (eval_id)
    WHERE NOT coalesce(CAST(json_extract(e.params, '$.library_leak') AS BOOLEAN), false)
) WHERE created_at = newest;

-- Artifact folders (relative to artifacts/) that committed rows still refer to; `hquery gc` removes the rest.
CREATE OR REPLACE VIEW live_artifacts AS
SELECT artifact_path AS path FROM encoders
UNION ALL SELECT artifact_path FROM models WHERE retired_at IS NULL
UNION ALL SELECT path FROM index_versions WHERE retired_at IS NULL
UNION ALL SELECT 'evals/' || eval_id FROM prompt_eval_runs
UNION ALL SELECT 'evals/' || eval_id || '_routes' FROM prompt_eval_runs
UNION ALL SELECT 'associations/' || run_id FROM association_runs
UNION ALL SELECT 'survival/' || run_id FROM survival_runs
UNION ALL SELECT 'maps/' || map_id FROM space_maps
UNION ALL SELECT 'evals/' || adapt_id FROM adaptation_runs;

-- The adaptation curves: per run, fraction, start and metric, the mean and SD over the draws of patients
-- (r2: each draw's mean over the gene sets first).
CREATE OR REPLACE VIEW adaptation_curve AS
WITH per_draw AS (
    SELECT adapt_id, fraction, repeat, start, metric, avg(n_adapt_pairs) AS n_adapt_pairs, avg(value) AS value
    FROM adaptation_results GROUP BY ALL
)
SELECT adapt_id, fraction, start, metric, avg(n_adapt_pairs) AS n_adapt_pairs, avg(value) AS mean,
       stddev_samp(value) AS sd, count(*) AS repeats
FROM per_draw GROUP BY ALL ORDER BY adapt_id, metric, start, fraction;
