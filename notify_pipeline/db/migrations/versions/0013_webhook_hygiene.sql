-- 0013: Webhook hygiene. No schema change is needed, and none is made:
--  * the retry of statuses waiting for their message id (receipts/waiting.py) walks
--    webhook_events_waiting_idx (0006) and probes notifications_wa_message_id_idx (0001) once per
--    waiting status, so it never scans notifications and never stops at a fixed window;
--  * the clean-up of webhook_events (operations/retention.py) deletes by received_at, on
--    webhook_events_received_at_idx (0006);
--  * an update refused for its date is stored settled: applied_at set, outcome 'refused: ...'.
SELECT 1;
