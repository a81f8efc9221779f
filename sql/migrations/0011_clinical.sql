-- `hquery associate`: does a gene set's score differ between the groups of a manifest column, or follow a numeric
-- one? One row per run, one per (gene set, score source, stratum) tested.
CREATE TABLE association_runs (
    run_id      VARCHAR PRIMARY KEY,
    created_at  TIMESTAMP NOT NULL,
    column_name VARCHAR NOT NULL,
    kind        VARCHAR NOT NULL,      -- categorical | numeric
    within_column VARCHAR,
    params      JSON
);

CREATE TABLE association_results (
    run_id      VARCHAR NOT NULL,
    gene_set    VARCHAR NOT NULL,
    source      VARCHAR NOT NULL,      -- predicted | measured
    stratum     VARCHAR,               -- the --within value, NULL for all samples
    test        VARCHAR NOT NULL,      -- mann_whitney | kruskal_wallis | spearman
    n           INTEGER NOT NULL,      -- observations: each patient once per value of the column
    n_groups    INTEGER,
    statistic   DOUBLE,
    effect      DOUBLE,
    effect_name VARCHAR,               -- rank_biserial | epsilon_squared | spearman_rho
    p_value     DOUBLE,
    q_value     DOUBLE,                -- Benjamini-Hochberg over the run's tests
    groups      JSON                   -- per group: patients and median score
);

-- `hquery survival`: Kaplan-Meier by a split of a gene set's score, log-rank, and Cox per SD of the score.
CREATE TABLE survival_runs (
    run_id       VARCHAR PRIMARY KEY,
    created_at   TIMESTAMP NOT NULL,
    time_column  VARCHAR NOT NULL,
    event_column VARCHAR NOT NULL,
    split        VARCHAR NOT NULL,     -- median | tertile
    params       JSON
);

CREATE TABLE survival_results (
    run_id          VARCHAR NOT NULL,
    gene_set        VARCHAR NOT NULL,
    source          VARCHAR NOT NULL,  -- predicted | measured
    n               INTEGER NOT NULL,  -- patients
    n_events        INTEGER NOT NULL,
    logrank_p       DOUBLE,
    hazard_ratio    DOUBLE,            -- Cox, per standard deviation of the score
    hr_lower        DOUBLE,            -- its 95% confidence interval
    hr_upper        DOUBLE,
    cox_p           DOUBLE,
    groups          JSON               -- per group: patients, events, median survival
);

-- `hquery archetypes`: tumour-microenvironment classes from a median split of an immune and a fibrosis score
-- (after Bagaev et al., Cancer Cell 2021), from predicted and from measured scores, and how well they agree.
CREATE TABLE archetype_runs (
    run_id       VARCHAR PRIMARY KEY,
    created_at   TIMESTAMP NOT NULL,
    immune_set   VARCHAR NOT NULL,
    fibrosis_set VARCHAR NOT NULL,
    n_compared   INTEGER,            -- samples with both a predicted and a measured class
    accuracy     DOUBLE,
    kappa        DOUBLE,             -- Cohen's kappa, predicted against measured
    confusion    JSON,               -- {measured class: {predicted class: count}}
    params       JSON
);

CREATE TABLE archetype_classes (
    run_id      VARCHAR NOT NULL,
    sample_id   VARCHAR NOT NULL,
    source      VARCHAR NOT NULL,    -- predicted | measured
    immune      DOUBLE,
    fibrosis    DOUBLE,
    archetype   VARCHAR NOT NULL     -- immune-enriched, fibrotic | immune-enriched | fibrotic | depleted
);
