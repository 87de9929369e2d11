-- A text longer than the encoder's window is scored in chunks (issue #18):
-- how many, so a reader knows the score combines several windows.
ALTER TABLE sentiment_scores ADD COLUMN chunks INTEGER NOT NULL DEFAULT 1;
