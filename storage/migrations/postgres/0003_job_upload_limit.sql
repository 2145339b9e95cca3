-- The upload limit Discord stated on the interaction (attachment_size_limit): after a restart the bot no
-- longer has the interaction, and boosted servers allow more than the guild-tier fallback says.
ALTER TABLE jobs ADD COLUMN upload_limit BIGINT CHECK (upload_limit IS NULL OR upload_limit > 0);
