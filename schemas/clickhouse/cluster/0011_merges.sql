-- The same merge settings as `../0011_merges.sql`, on each shard's local tables (every replica).
ALTER TABLE signals_local ON CLUSTER '{cluster}' MODIFY SETTING merge_selector_base = 20, merge_selector_enable_heuristic_to_lower_max_parts_to_merge_at_once = 0;
ALTER TABLE can_signals_local ON CLUSTER '{cluster}' MODIFY SETTING merge_selector_base = 20, merge_selector_enable_heuristic_to_lower_max_parts_to_merge_at_once = 0;
