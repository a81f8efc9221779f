-- Views over the catalog, re-created after every migration.

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

CREATE OR REPLACE VIEW prompt_results_annotated AS
SELECT
    r.run_id, p.created_at, r.gene_set, p.method, p.level, p.model_version,
    r.sample_id, r.tile_index, s.patient_id, s.cohort, s.cancer_type, s.clinical,
    r.score, r.dispersion, r.effective_k
FROM prompt_results r
JOIN prompt_runs p USING (run_id)
JOIN samples s USING (sample_id);

CREATE OR REPLACE VIEW model_metrics_summary AS
SELECT
    model_version, method, direction, metric,
    avg(value)         AS mean,
    stddev_samp(value) AS sd,
    count(*)           AS n_folds
FROM model_metrics
GROUP BY ALL;
