-- Fewer rewrites of every sample row by background merges. Applied by `Store.migrate()`;
-- every statement is idempotent.
--
-- The gateway writes one part per batch (up to 1 M rows at 1 M samples/s), and the default
-- merge selector (base 5, with the heuristic that lowers merge widths as parts pile up) merged
-- them four levels deep within four minutes: at full load the embedded engine's merges took the
-- gateway from ~1.17 to ~1.3 cores. Base 20 without that heuristic merges wider and less often
-- (two levels in four minutes, 24 active parts instead of 9, well under `parts_to_delay_insert`):
-- 807-822 k samples stored per gateway core-second against 754-767 k, four-minute runs at 1 M
-- offered (benchmarks/README.md). The identity lookup reads one projection per part; it stayed
-- 50-155 ms per batch.
ALTER TABLE signals MODIFY SETTING merge_selector_base = 20, merge_selector_enable_heuristic_to_lower_max_parts_to_merge_at_once = 0;
ALTER TABLE can_signals MODIFY SETTING merge_selector_base = 20, merge_selector_enable_heuristic_to_lower_max_parts_to_merge_at_once = 0;
