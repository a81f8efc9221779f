-- For a route whose raw held-out scores are on another scale than the truth (HistoPrism's ssGSEA over its
-- gene panel), the line truth ~ slope * score + intercept fitted on all its held-out predictions: a prompt
-- by that route's deployed model applies it, so its scores and their trust are on the truth's scale.
ALTER TABLE prompt_eval_results ADD COLUMN line_slope DOUBLE;
ALTER TABLE prompt_eval_results ADD COLUMN line_intercept DOUBLE;
