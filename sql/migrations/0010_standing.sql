-- Where each predicted score stands among the reference library's measured ones: its percentile (0-100)
-- among the library's scores of the set, and its z-score among the library profiles of its cancer type.
ALTER TABLE prompt_scores ADD COLUMN percentile DOUBLE;
ALTER TABLE prompt_scores ADD COLUMN type_z DOUBLE;
