-- Training and the model registry (python -m training fit / promote / shadow / compare /
-- export): read what a model learns from and is compared on, write the registry's rows; no
-- right on the pipeline's results. NOLOGIN: give a login to a user of this role with
-- `python -m db create-trainer-login NAME`.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'vs_trainer') THEN
        CREATE ROLE vs_trainer NOLOGIN;
    END IF;
END
$$;
GRANT SELECT ON image_info, prediction_results, prediction_errors, image_embeddings, shadow_predictions,
    labelling_projects, labels TO vs_trainer;
GRANT SELECT, INSERT, UPDATE ON models TO vs_trainer;
