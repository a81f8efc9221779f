-- One row per `hquery refresh`: what it found, what it trained, how the candidate
-- and the model in service scored on the same held-out patients, and what it did.
CREATE TABLE refresh_runs (
    refresh_id              VARCHAR PRIMARY KEY,
    started_at              TIMESTAMP NOT NULL,
    finished_at             TIMESTAMP,
    status                  VARCHAR NOT NULL,  -- running | nothing_new | promoted | rejected | failed | interrupted
    reason                  VARCHAR,
    service_model           VARCHAR,           -- behind the current index when the refresh started
    candidate_model         VARCHAR,           -- promoted: the model now behind the current index
    index_version           VARCHAR,
    peka_adapter            VARCHAR,
    n_pairs                 INTEGER,
    n_new_pairs             INTEGER,
    n_eval_patients         INTEGER,
    service_recall_at_10    DOUBLE,
    candidate_recall_at_10  DOUBLE,
    tolerance               DOUBLE,
    steps                   JSON               -- [{"step": ..., "seconds": ...}, ...]
);
