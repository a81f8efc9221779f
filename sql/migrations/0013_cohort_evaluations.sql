-- `hquery eval adapt`: warm start against training from scratch on growing fractions of a new cohort's patients.
-- One row per run; one per (fraction, draw of patients, start, metric, gene set).
CREATE TABLE adaptation_runs (
    adapt_id        VARCHAR PRIMARY KEY,
    created_at      TIMESTAMP NOT NULL,
    cohort          VARCHAR NOT NULL,
    base_model      VARCHAR NOT NULL,    -- the served version, or fitted:COHORTS when fitted without the cohort
    fractions       JSON NOT NULL,
    repeats         INTEGER NOT NULL,
    n_patients      INTEGER NOT NULL,    -- the cohort's patients with pairs
    n_test_patients INTEGER NOT NULL,    -- held out in every draw, the same for every fraction
    seconds         DOUBLE,
    params          JSON
);

CREATE TABLE adaptation_results (
    adapt_id         VARCHAR NOT NULL,
    fraction         DOUBLE NOT NULL,
    repeat           INTEGER NOT NULL,
    n_adapt_patients INTEGER NOT NULL,
    n_adapt_pairs    INTEGER NOT NULL,
    start            VARCHAR NOT NULL,   -- warm | scratch | ridge | chance | ridge_type
    metric           VARCHAR NOT NULL,   -- he_to_rna:recall@K | rna_to_he:recall@K | r2
    gene_set         VARCHAR,            -- for r2
    value            DOUBLE
);

-- `hquery eval transfer`: fitted on some cohorts, scored on another, beside that cohort's own cross-validation.
CREATE TABLE transfer_runs (
    transfer_id     VARCHAR PRIMARY KEY,
    created_at      TIMESTAMP NOT NULL,
    train_cohorts   JSON NOT NULL,
    test_cohort     VARCHAR NOT NULL,
    library_cohorts JSON NOT NULL,
    n_train         INTEGER NOT NULL,
    n_test          INTEGER NOT NULL,
    n_library       INTEGER NOT NULL,
    params          JSON
);

CREATE TABLE transfer_results (
    transfer_id VARCHAR NOT NULL,
    setting     VARCHAR NOT NULL,        -- transfer | in_cohort
    method      VARCHAR NOT NULL,        -- recall: aligned | ridge | chance; spectrum: a route
    direction   VARCHAR,                 -- he_to_rna | rna_to_he (recall)
    metric      VARCHAR NOT NULL,        -- recall@K, mrr, ... | r2_calibrated | pearson_r | r_within_type
    gene_set    VARCHAR,                 -- spectrum rows
    value       DOUBLE
);
