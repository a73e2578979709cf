-- error_type is a contract between the workers, the metrics and the viewer: only the values
-- of common/errors.py's ErrorType (tests/db check that the two lists agree).
ALTER TABLE prediction_errors DROP CONSTRAINT IF EXISTS prediction_errors_error_type_check;
ALTER TABLE prediction_errors ADD CONSTRAINT prediction_errors_error_type_check CHECK (error_type IN (
    'missing', 'access_denied', 'bad_key', 'empty', 'too_large', 'not_an_image', 'corrupt',
    'bad_message', 'internal'));
