-- Every evaluation carries the ridge + cancer-type floor (method 'ridge_type') and the
-- Pearson r left once each cancer type's mean is removed from prediction and truth.
ALTER TABLE prompt_eval_results ADD COLUMN r_within_type DOUBLE;
