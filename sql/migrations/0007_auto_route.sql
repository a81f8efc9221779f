-- Per gene set, the route `auto` chose in an evaluation (on rows with method 'auto'),
-- and on every prompt score the route that produced it and that route's held-out R²
-- in the latest evaluation of the set (trust; NULL when the set was never evaluated).
ALTER TABLE prompt_eval_results ADD COLUMN route VARCHAR;
ALTER TABLE prompt_scores ADD COLUMN route VARCHAR;
ALTER TABLE prompt_scores ADD COLUMN trust DOUBLE;
