-- Nudges sent at most once, caps checked atomically, and where the text
-- came from. A delivery *claims* its nudge before anything leaves:
-- status `sending` with `claim_id` and `lease_until`, committed in the
-- same transaction that checks the caps (serialised per tenant or
-- account), so concurrent deliveries count each other. A claim found past
-- its lease belonged to an attempt that died mid-send: the nudge becomes
-- `unknown` and is never sent again.
ALTER TABLE nudges ADD COLUMN claim_id TEXT;
ALTER TABLE nudges ADD COLUMN lease_until BIGINT;
-- `template` or `llm` (rules with `personalise = true`); `text_note`: why
-- the template was used instead of the LLM's text.
ALTER TABLE nudges ADD COLUMN text_source TEXT;
ALTER TABLE nudges ADD COLUMN text_note TEXT;
